/**
 * A dispatcher for requests to strangers' hosts (handles, did:web, hosts
 * asking to be crawled): a connection pool per origin, like undici's `Agent`,
 * except that a pool goes away once it has no connection left, and the
 * number of pools is capped. undici 6's `Agent` keeps every origin's pool
 * for good (its own source says so); at ~22 KB of heap each, a relay that
 * checks handles on a stream of `#identity` events, or a host announcing
 * identities under ever new subdomains, grew without bound. (undici 7 drops
 * idle pools but needs Node ≥ 20.18; this project supports 20.12.)
 */
import { Client, Dispatcher, Pool } from 'undici'

export interface OriginPoolsOptions {
  /**
   * Options of each origin's pool (connector, timeouts, connections). With `connections: 1` an
   * origin gets a single `Client` instead of a `Pool`, as undici's Agent does: ~100 µs less CPU per
   * new origin (bench in the commit), for callers that send one request per name.
   */
  pool: Pool.Options
  /** Pools kept at most; the least recently used one is closed (gracefully) beyond it. */
  maxOrigins: number
}

export class OriginPools extends Dispatcher {
  /** In least-recently-used order (a pool is moved to the end when used). */
  private readonly pools = new Map<string, Pool | Client>()
  private closed = false

  constructor(private readonly opts: OriginPoolsOptions) {
    super()
    if (!(opts.maxOrigins >= 1)) throw new RangeError('maxOrigins must be at least 1')
  }

  /** Origins with a pool now. */
  get origins(): number {
    return this.pools.size
  }

  override dispatch(options: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandlers): boolean {
    if (this.closed) throw new Error('dispatcher closed')
    const key = String(options.origin)
    let pool = this.pools.get(key)
    if (pool !== undefined) {
      this.pools.delete(key)
      this.pools.set(key, pool)
    } else {
      pool = this.open(key)
    }
    return pool.dispatch(options, handler)
  }

  private open(key: string): Pool | Client {
    const single = this.opts.pool.connections === 1
    const pool = single ? new Client(key, this.opts.pool) : new Pool(key, this.opts.pool)
    // A pool with no connection is dropped: the next request to its origin opens a new one. A
    // connection that failed counts too, or every unreachable name would keep a pool. (A Client
    // has one connection: when it goes, none is left.)
    const dropIfUnused = () => {
      if ((pool instanceof Client || pool.stats.connected === 0) && this.pools.get(key) === pool) this.retire(key, pool)
    }
    pool.on('disconnect', dropIfUnused).on('connectionError', dropIfUnused)
    this.pools.set(key, pool)
    if (this.pools.size > this.opts.maxOrigins) {
      const [oldestKey, oldest] = this.pools.entries().next().value as [string, Pool | Client]
      this.retire(oldestKey, oldest)
    }
    return pool
  }

  /** Out of the map at once; close() lets the requests it already holds finish. */
  private retire(key: string, pool: Pool | Client): void {
    this.pools.delete(key)
    // Nothing to report: a close that fails has no request left to fail with it.
    if (!pool.closed && !pool.destroyed) void pool.close().catch(() => undefined)
  }

  override close(): Promise<void>
  override close(callback: () => void): void
  override close(callback?: () => void): Promise<void> | void {
    this.closed = true
    const pools = [...this.pools.values()]
    this.pools.clear()
    const done = Promise.all(pools.map((p) => p.close())).then(() => undefined)
    if (callback === undefined) return done
    void done.then(callback, callback)
  }

  override destroy(): Promise<void>
  override destroy(err: Error | null): Promise<void>
  override destroy(callback: () => void): void
  override destroy(err: Error | null, callback: () => void): void
  override destroy(errOrCallback?: Error | null | (() => void), maybeCallback?: () => void): Promise<void> | void {
    const err = typeof errOrCallback === 'function' ? null : (errOrCallback ?? null)
    const callback = typeof errOrCallback === 'function' ? errOrCallback : maybeCallback
    this.closed = true
    const pools = [...this.pools.values()]
    this.pools.clear()
    const done = Promise.all(pools.map((p) => p.destroy(err))).then(() => undefined)
    if (callback === undefined) return done
    void done.then(callback, callback)
  }
}
