/**
 * The relay's view of identities: DID → signing key, PDS and claimed handle,
 * through a bounded memory LRU, then the `identity` table, then the network.
 * Concurrent lookups of one DID share one resolution; outbound resolutions
 * are rate-limited per target (PLC directory, each did:web host) by delaying.
 */
import type { Logger } from 'pino'
import type { Registry } from 'prom-client'
import { LRUCache } from 'lru-cache'
import type { Storage } from '../storage/db.js'
import { IdentityMemoryCache, IdentityStore, type CachedIdentity } from './cache.js'
import type { IdentityResult } from './did-doc.js'
import type { HandleResolution } from './handle.js'
import { createIdentityMetrics, type IdentityMetrics } from './metrics.js'
import { KeyedTokenBucket, type RateLimit } from './rate-limit.js'
import { didMethod, webDidAuthority, type DidResolverLike } from './resolver.js'

export interface HandleResolverLike {
  resolve(handle: string): Promise<HandleResolution>
}

export interface IdentityDirectoryOptions {
  resolver: DidResolverLike | ((did: string) => Promise<IdentityResult>)
  /** Handle → DID; without it `resolveHandle` returns null and `verifyHandle` false. */
  handleResolver?: HandleResolverLike
  /** The `identity` table layer; memory only when absent. */
  storage?: Storage
  /** In-memory LRU entries (memory stays flat beyond this). */
  cacheSize: number
  /** How long an `ok` result is served before re-resolving. */
  goodTtlMs: number
  /** How long any other result is served before re-resolving. */
  errorTtlMs: number
  /** How long a failed bidirectional handle check is remembered (default 5 min, as indigo). */
  invalidHandleTtlMs?: number
  /** A DID is force-refreshed at most once per this interval (default 10 s); extra forces are served from cache. */
  forceRefreshIntervalMs?: number
  /** Outbound limits per target; delays rather than fails. Defaults: plc 100/s burst 200, web and handles 10/s burst 20. */
  perTargetRate?: { plc?: RateLimit; web?: RateLimit }
  logger: Logger
  registry: Registry
  /** Clock (ms since epoch), injectable for TTL tests. */
  now?: () => number
}

interface InFlight {
  promise: Promise<IdentityResult>
  forced: boolean
}

const DEFAULT_PLC_RATE: RateLimit = { ratePerSec: 100, burst: 200 }
const DEFAULT_WEB_RATE: RateLimit = { ratePerSec: 10, burst: 20 }

export class IdentityDirectory {
  private readonly resolveFn: (did: string) => Promise<IdentityResult>
  private readonly handles: HandleResolverLike | undefined
  private readonly store: IdentityStore | undefined
  private readonly memory: IdentityMemoryCache
  private readonly inflight = new Map<string, InFlight>()
  /** When each DID was last force-refreshed (bounded like the cache). */
  private readonly forcedAt: LRUCache<string, number>
  /** The latest bidirectional handle check per DID (one entry per DID, so refresh forgets it in O(1)). */
  private readonly handleChecks: LRUCache<string, { handle: string; valid: boolean; expiresAt: number }>
  private readonly plcLimiter: KeyedTokenBucket
  private readonly webLimiter: KeyedTokenBucket
  private readonly metrics: IdentityMetrics
  private readonly logger: Logger
  private readonly now: () => number
  private readonly goodTtlMs: number
  private readonly errorTtlMs: number
  private readonly invalidHandleTtlMs: number
  private readonly forceRefreshIntervalMs: number

  constructor(opts: IdentityDirectoryOptions) {
    const r = opts.resolver
    this.resolveFn = typeof r === 'function' ? r : (did) => r.resolve(did)
    this.handles = opts.handleResolver
    this.store = opts.storage ? new IdentityStore(opts.storage) : undefined
    this.memory = new IdentityMemoryCache(opts.cacheSize)
    this.forcedAt = new LRUCache({ max: opts.cacheSize })
    this.handleChecks = new LRUCache({ max: opts.cacheSize })
    this.plcLimiter = new KeyedTokenBucket(opts.perTargetRate?.plc ?? DEFAULT_PLC_RATE)
    this.webLimiter = new KeyedTokenBucket(opts.perTargetRate?.web ?? DEFAULT_WEB_RATE)
    this.metrics = createIdentityMetrics(opts.registry, () => this.memory.size)
    this.logger = opts.logger
    this.now = opts.now ?? Date.now
    this.goodTtlMs = opts.goodTtlMs
    this.errorTtlMs = opts.errorTtlMs
    this.invalidHandleTtlMs = opts.invalidHandleTtlMs ?? 5 * 60_000
    this.forceRefreshIntervalMs = opts.forceRefreshIntervalMs ?? 10_000
  }

  /** Entries currently in the memory layer. */
  get cacheSize(): number {
    return this.memory.size
  }

  /**
   * The identity of `did`, from cache while its TTL lasts. `forceRefresh`
   * bypasses both cache layers (use on `#identity` and once after a signature
   * failure), at most once per DID per `forceRefreshIntervalMs`.
   */
  async resolve(did: string, opts: { forceRefresh?: boolean } = {}): Promise<IdentityResult> {
    let force = opts.forceRefresh ?? false
    const now = this.now()
    if (force) {
      const running = this.runningForced(did)
      if (running) return running
      const last = this.forcedAt.get(did)
      if (last !== undefined && now - last < this.forceRefreshIntervalMs) {
        this.metrics.forcedRefreshes.inc({ outcome: 'suppressed' })
        force = false // a fresh-enough result exists or is on its way
      } else {
        this.forcedAt.set(did, now)
        this.metrics.forcedRefreshes.inc({ outcome: 'fetched' })
      }
    }
    if (!force) {
      const hit = this.cached(did, now)
      if (hit !== undefined) return hit
    }
    const running = this.inflight.get(did)
    if (running && (running.forced || !force)) {
      this.metrics.coalesced.inc()
      return running.promise
    }
    return this.startLoad(did, force)
  }

  /**
   * The memory layer's answer for `did` while its TTL lasts, without waiting:
   * what `resolve` returns first, for callers that skip a promise when the
   * answer is at hand (every event of a known account).
   */
  cached(did: string, now = this.now()): IdentityResult | undefined {
    const hit = this.memory.get(did)
    if (hit === undefined || hit.expiresAt <= now) return undefined
    this.metrics.memoryHit()
    return hit.result
  }

  /**
   * Resolves `did` afresh because its host said it changed (`#identity`):
   * the remembered handle check is forgotten and the result replaces both
   * cache layers, with no rate suppression: an `#identity` right after
   * another (a new account, then its handle change) must not be answered from
   * the first one's copy. The stored row is overwritten, never deleted first.
   */
  refresh(did: string): Promise<IdentityResult> {
    this.memory.delete(did)
    this.handleChecks.delete(did)
    const running = this.runningForced(did)
    if (running) return running
    this.forcedAt.set(did, this.now())
    this.metrics.forcedRefreshes.inc({ outcome: 'fetched' })
    return this.startLoad(did, true)
  }

  /** A forced resolution already under way: exactly what a caller forcing one wants. */
  private runningForced(did: string): Promise<IdentityResult> | undefined {
    const running = this.inflight.get(did)
    if (!running?.forced) return undefined
    this.metrics.coalesced.inc()
    return running.promise
  }

  /** Loads `did`, shared with every caller that arrives while it runs. */
  private startLoad(did: string, force: boolean): Promise<IdentityResult> {
    const promise = this.load(did, force).finally(() => {
      if (this.inflight.get(did)?.promise === promise) this.inflight.delete(did)
    })
    this.inflight.set(did, { promise, forced: force })
    return promise
  }

  private expiry(result: IdentityResult, fetchedAt: number): number {
    return fetchedAt + (result.status === 'ok' ? this.goodTtlMs : this.errorTtlMs)
  }

  private async load(did: string, force: boolean): Promise<IdentityResult> {
    let previous: CachedIdentity | undefined = this.memory.get(did)
    if (!force && this.store) {
      const stored = await this.loadStored(did)
      if (stored) {
        // A literal, not `{ ...stored, expiresAt }`: the spread copy gets a property backing
        // store of its own, ~200 B more per cached identity (measured).
        const entry: CachedIdentity = { result: stored.result, fetchedAt: stored.fetchedAt, expiresAt: this.expiry(stored.result, stored.fetchedAt) }
        if (entry.expiresAt > this.now()) {
          this.metrics.cacheHits.inc({ layer: 'storage' })
          this.memory.set(did, entry)
          return entry.result
        }
        if (!previous || previous.fetchedAt < entry.fetchedAt) previous = entry
      }
    }
    if (!force) this.metrics.cacheMisses.inc()

    const fetchedAt = this.now()
    const result = await this.resolveRemote(did)
    // A forced refresh follows an #identity or a signature failure: re-check the handle too.
    if (force) this.handleChecks.delete(did)

    // A transient failure does not throw away a good identity: keep serving it, retry after the error TTL.
    if (result.status === 'failed' && previous?.result.status === 'ok') {
      this.metrics.staleServed.inc()
      this.logger.warn({ did, error: result.error }, 'identity: re-resolution failed, keeping the previous document')
      this.memory.set(did, { result: previous.result, fetchedAt: previous.fetchedAt, expiresAt: fetchedAt + this.errorTtlMs })
      return previous.result
    }

    this.memory.set(did, { result, fetchedAt, expiresAt: this.expiry(result, fetchedAt) })
    if (this.store) {
      try {
        await this.store.save(result, fetchedAt)
      } catch (err) {
        this.metrics.storeErrors.inc({ op: 'save' })
        this.logger.warn({ err, did }, 'identity: storing the resolution failed')
      }
    }
    return result
  }

  private async loadStored(did: string): Promise<{ result: IdentityResult; fetchedAt: number } | undefined> {
    try {
      return await this.store!.load(did)
    } catch (err) {
      this.metrics.storeErrors.inc({ op: 'load' })
      this.logger.warn({ err, did }, 'identity: reading the stored identity failed; resolving instead')
      return undefined
    }
  }

  private async resolveRemote(did: string): Promise<IdentityResult> {
    const method = didMethod(did) ?? 'other'
    // Unsupported methods never reach the network, so they take no token.
    let waitMs = 0
    if (method === 'plc') waitMs = await this.plcLimiter.take('plc')
    else if (method === 'web') waitMs = await this.webLimiter.take(webDidAuthority(did) ?? did)
    if (waitMs > 0) this.metrics.rateLimitDelay.inc({ method }, waitMs / 1000)
    const end = this.metrics.duration.startTimer({ method })
    let result: IdentityResult
    try {
      result = await this.resolveFn(did)
    } catch (err) {
      result = { status: 'failed', did, error: `resolver threw: ${(err as Error).message}` }
      this.logger.error({ err, did }, 'identity: resolver threw')
    }
    end()
    this.metrics.resolutions.inc({ method, result: result.status })
    if (result.status !== 'ok') this.logger.debug({ did, status: result.status, error: result.error }, 'identity: resolution did not succeed')
    return result
  }

  /** handle → DID (DNS TXT preferred, then HTTPS), or null. Not cached: use `verifyHandle` for the checked form. */
  async resolveHandle(handle: string): Promise<string | null> {
    if (!this.handles) return null
    const target = handle.toLowerCase()
    const waitMs = await this.webLimiter.take(target)
    if (waitMs > 0) this.metrics.rateLimitDelay.inc({ method: 'handle' }, waitMs / 1000)
    let res: HandleResolution
    try {
      res = await this.handles.resolve(target)
    } catch (err) {
      this.logger.warn({ err, handle }, 'identity: handle resolver threw')
      res = { did: null, error: (err as Error).message }
    }
    this.metrics.handleResolutions.inc({ result: res.did ? res.method : 'failed' })
    return res.did
  }

  /**
   * True when `did`'s document claims `handle` and `handle` resolves back to
   * `did`. Cached: valid results for the good TTL, invalid ones for
   * `invalidHandleTtlMs`.
   */
  async verifyHandle(did: string, handle: string): Promise<boolean> {
    const normalized = handle.toLowerCase()
    const now = this.now()
    const cached = this.handleChecks.get(did)
    if (cached && cached.handle === normalized && cached.expiresAt > now) {
      this.metrics.handleVerifications.inc({ result: String(cached.valid), cached: 'true' })
      return cached.valid
    }
    const identity = await this.resolve(did)
    let valid = identity.status === 'ok' && identity.handle === normalized
    if (valid) valid = (await this.resolveHandle(normalized)) === did
    this.handleChecks.set(did, { handle: normalized, valid, expiresAt: now + (valid ? this.goodTtlMs : this.invalidHandleTtlMs) })
    this.metrics.handleVerifications.inc({ result: String(valid), cached: 'false' })
    return valid
  }
}
