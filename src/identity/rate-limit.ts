/**
 * Per-key token buckets. `take` delays callers instead of failing them, so the
 * relay never hammers one PLC directory or did:web host however many events
 * ask for resolutions at once; `tryTake` refuses at once instead (per-client
 * limits on the public API answer 429 rather than hold a request open).
 */
import { LRUCache } from 'lru-cache'

export interface RateLimit {
  /** Sustained requests per second per key. */
  ratePerSec: number
  /** Requests allowed at once before delays start. */
  burst: number
}

/** What `tryTake` decided, with what a client needs for the RateLimit-* headers. */
export interface TakeResult {
  allowed: boolean
  /** Whole tokens left after this request. */
  remaining: number
  /** Milliseconds until the bucket is full again. */
  resetMs: number
  /** Milliseconds until one token is available (0 when allowed). */
  retryAfterMs: number
}

interface Bucket {
  tokens: number
  updatedAt: number
}

export class KeyedTokenBucket {
  private readonly buckets: LRUCache<string, Bucket>
  private readonly rate: number
  private readonly burst: number
  private readonly now: () => number

  constructor(
    limit: RateLimit,
    opts: { maxKeys?: number; now?: () => number } = {},
  ) {
    if (!(limit.ratePerSec > 0) || !(limit.burst >= 1)) throw new RangeError('rate limit needs ratePerSec > 0 and burst >= 1')
    this.rate = limit.ratePerSec
    this.burst = limit.burst
    this.now = opts.now ?? (() => performance.now())
    // Bounded: an evicted key simply starts again with a full bucket.
    this.buckets = new LRUCache({ max: opts.maxKeys ?? 10_000 })
  }

  /** The bucket size: requests allowed at once. */
  get capacity(): number {
    return this.burst
  }

  /** Takes one token for `key` if one is available now; never waits and never goes into debt. */
  tryTake(key: string): TakeResult {
    const b = this.refill(key)
    const allowed = b.tokens >= 1
    if (allowed) b.tokens -= 1
    const resetMs = ((this.burst - b.tokens) / this.rate) * 1000
    const retryAfterMs = allowed ? 0 : ((1 - b.tokens) / this.rate) * 1000
    return { allowed, remaining: Math.floor(b.tokens), resetMs, retryAfterMs }
  }

  private refill(key: string): Bucket {
    const now = this.now()
    const b = this.buckets.get(key) ?? { tokens: this.burst, updatedAt: now }
    b.tokens = Math.min(this.burst, b.tokens + ((now - b.updatedAt) / 1000) * this.rate)
    b.updatedAt = now
    this.buckets.set(key, b)
    return b
  }

  /**
   * Reserves one token for `key` and returns how many milliseconds the caller
   * must wait before using it (0 when a token is available now).
   */
  reserve(key: string): number {
    const b = this.refill(key)
    b.tokens -= 1
    return b.tokens >= 0 ? 0 : (-b.tokens / this.rate) * 1000
  }

  /** Waits for a token for `key`; resolves with the delay applied in ms. */
  async take(key: string): Promise<number> {
    const wait = this.reserve(key)
    if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait))
    return wait
  }
}
