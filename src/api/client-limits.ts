/**
 * Per-client limits on the public API: a request rate and a concurrency
 * bound on XRPC, a bound on open firehose connections, and a requestCrawl
 * rate. Refusals are 429 RateLimitExceeded with the RateLimit-* headers the
 * atproto services send (PDS convention: Limit, Remaining, Reset as UNIX
 * seconds, Policy `<limit>;w=<window seconds>`) and Retry-After.
 *
 * Loopback clients (tools and tests on the relay's own machine) and
 * admin-authenticated requests are not limited unless RELAY_LIMIT_LOOPBACK.
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Duplex } from 'node:stream'
import { answerRaw } from '../http/raw-response.js'
import { KeyedTokenBucket, type TakeResult } from '../identity/rate-limit.js'
import { clientAddress, clientKey, isLoopback } from './client-address.js'
import type { RequestGuard } from './http-server.js'
import type { RefusalLimit, RefusalMetrics } from './refusals.js'
import { XrpcError } from '../atproto/xrpc-error.js'

export interface ClientLimitsOptions {
  /** RELAY_CLIENT_IP_HEADER */
  ipHeader: string | undefined
  /** RELAY_LIMIT_LOOPBACK */
  limitLoopback: boolean
  /** RELAY_CLIENT_RATE_LIMIT per RELAY_CLIENT_RATE_WINDOW */
  rate: { limit: number; windowMs: number }
  /** RELAY_CLIENT_CONCURRENCY */
  concurrency: number
  /** RELAY_FIREHOSE_CONNECTIONS_PER_CLIENT */
  firehoseConnections: number
  /** RELAY_CRAWL_RATE_LIMIT per RELAY_CLIENT_RATE_WINDOW */
  crawl: { limit: number; windowMs: number }
  /** True for a request carrying valid admin credentials. */
  isAdmin?: (req: IncomingMessage) => boolean
  refusals: RefusalMetrics
  /** Clients whose buckets are remembered (LRU); a forgotten one starts with a full bucket. */
  maxClients?: number
  now?: () => number
}

/** Headers a browser may read on a limited response (CORS). */
const EXPOSED = 'RateLimit-Limit, RateLimit-Remaining, RateLimit-Reset, RateLimit-Policy, Retry-After'

class WindowBucket {
  readonly bucket: KeyedTokenBucket
  readonly policy: string

  constructor(
    readonly limit: number,
    windowMs: number,
    maxKeys: number,
    private readonly now: () => number,
  ) {
    // A token bucket holding the whole window's budget, refilled evenly across the window.
    this.bucket = new KeyedTokenBucket({ ratePerSec: limit / (windowMs / 1000), burst: limit }, { maxKeys, now })
    this.policy = `${limit};w=${Math.max(1, Math.round(windowMs / 1000))}`
  }

  headers(taken: TakeResult): Record<string, string> {
    return {
      'RateLimit-Limit': String(this.limit),
      'RateLimit-Remaining': String(taken.remaining),
      'RateLimit-Reset': String(Math.ceil((Date.now() + taken.resetMs) / 1000)),
      'RateLimit-Policy': this.policy,
    }
  }
}

export class ClientLimits implements RequestGuard {
  private readonly opts: ClientLimitsOptions
  private readonly xrpcRate: WindowBucket
  private readonly crawlRate: WindowBucket
  private readonly inFlight = new Map<string, number>()
  private readonly firehose = new Map<string, number>()

  constructor(opts: ClientLimitsOptions) {
    this.opts = opts
    const now = opts.now ?? (() => performance.now())
    const maxKeys = opts.maxClients ?? 50_000
    this.xrpcRate = new WindowBucket(opts.rate.limit, opts.rate.windowMs, maxKeys, now)
    this.crawlRate = new WindowBucket(opts.crawl.limit, opts.crawl.windowMs, maxKeys, now)
  }

  /** The limit key of a request, or undefined when it is not limited. */
  private keyOf(req: IncomingMessage): string | undefined {
    const address = clientAddress(req, this.opts.ipHeader)
    if (!this.opts.limitLoopback && isLoopback(address)) return undefined
    if (req.headers.authorization && this.opts.isAdmin?.(req)) return undefined
    return clientKey(address)
  }

  /** Before an XRPC handler: throws 429 or returns the release of the client's concurrency slot. */
  admitXrpc(req: IncomingMessage, res: ServerResponse, nsid: string): () => void {
    const key = this.keyOf(req)
    if (key === undefined) return () => {}
    const taken = this.xrpcRate.bucket.tryTake(key)
    const headers = this.xrpcRate.headers(taken)
    for (const [name, value] of Object.entries(headers)) res.setHeader(name, value)
    // The admin surface answers no CORS headers at all (operator-only.ts).
    if (!nsid.startsWith('com.atproto.admin.')) res.setHeader('Access-Control-Expose-Headers', EXPOSED)
    if (!taken.allowed) throw this.refuse('client_rate', nsid, `too many requests: at most ${this.xrpcRate.policy.replace(';w=', ' per ')} s per client`, taken.retryAfterMs)
    const running = this.inFlight.get(key) ?? 0
    if (running >= this.opts.concurrency) throw this.refuse('client_concurrency', nsid, `too many requests in progress: at most ${this.opts.concurrency} at once per client`, 1_000)
    this.inFlight.set(key, running + 1)
    return once(() => decrement(this.inFlight, key))
  }

  /** Before a WebSocket upgrade: false when it answered 429 on the socket itself. */
  admitUpgrade(req: IncomingMessage, socket: Duplex, path: string): boolean {
    const key = this.keyOf(req)
    if (key === undefined) return true
    const open = this.firehose.get(key) ?? 0
    if (open >= this.opts.firehoseConnections) {
      const route = path.replace(/^\/xrpc\//, '')
      const err = this.refuse('firehose_connections', route, `too many firehose connections: at most ${this.opts.firehoseConnections} per client`, 10_000)
      answerRaw(socket, err.status, err.error, err.message, {
        'RateLimit-Limit': String(this.opts.firehoseConnections),
        'RateLimit-Remaining': '0',
        ...err.headers,
      })
      return false
    }
    this.firehose.set(key, open + 1)
    socket.once('close', () => decrement(this.firehose, key))
    return true
  }

  /** The requestCrawl rate per client; throws 429. Loopback and admin callers are not limited. */
  admitCrawl(req: IncomingMessage, res: ServerResponse, nsid: string): void {
    const key = this.keyOf(req)
    if (key === undefined) return
    const taken = this.crawlRate.bucket.tryTake(key)
    const headers = this.crawlRate.headers(taken)
    for (const [name, value] of Object.entries(headers)) res.setHeader(name, value)
    if (!taken.allowed) throw this.refuse('crawl_rate', nsid, `too many requestCrawl calls: at most ${this.crawlRate.policy.replace(';w=', ' per ')} s per client`, taken.retryAfterMs)
  }

  /** XRPC requests in progress and firehose connections open for a client address (limited clients only). */
  usageOf(address: string): { inFlight: number; firehose: number } {
    const key = clientKey(address)
    return { inFlight: this.inFlight.get(key) ?? 0, firehose: this.firehose.get(key) ?? 0 }
  }

  private refuse(limit: RefusalLimit, route: string, message: string, retryAfterMs: number): XrpcError {
    this.opts.refusals.refused(limit, route)
    return new XrpcError(429, 'RateLimitExceeded', message, { 'Retry-After': String(Math.max(1, Math.ceil(retryAfterMs / 1000))) })
  }
}

function decrement(counts: Map<string, number>, key: string): void {
  const n = (counts.get(key) ?? 1) - 1
  // Entries live only while a client has something open, so the maps stay as small as the open work.
  if (n <= 0) counts.delete(key)
  else counts.set(key, n)
}

function once(fn: () => void): () => void {
  let done = false
  return () => {
    if (done) return
    done = true
    fn()
  }
}
