/**
 * Re-checks an account's hosting status with its PDS
 * (`com.atproto.sync.getRepoStatus`) when the stored upstream status says
 * inactive but may be stale (indigo#1161: stale statuses silently froze
 * repos). SSRF-safe, size- and time-bounded, and rate-limited per host: when
 * a host's budget is spent the check is skipped (the stored status stands),
 * so a host cannot make the relay hammer it or stall ingest.
 */
import type { Dispatcher } from 'undici'
import type { Logger } from 'pino'
import { LRUCache } from 'lru-cache'
import { fetchBounded } from '../identity/http-fetch.js'
import { assertPublicUrl, createGuardedDispatcher } from '../identity/net-guard.js'
import type { UpstreamHost } from './types.js'

export interface RepoStatus {
  active: boolean
  status?: string
}

/** Returns the host's view of the account, or null when it cannot be known now. */
export type RepoStatusCheck = (host: UpstreamHost, did: string) => Promise<RepoStatus | null>

export interface RepoStatusCheckOptions {
  /** Development: plain http and loopback hosts (RELAY_ALLOW_INSECURE_HOSTS). */
  allowInsecure: boolean
  /** Whole request (default 5 s, as indigo). */
  timeoutMs?: number
  /** Checks per second per host (default 2, burst 10). */
  perHostRate?: { ratePerSec: number; burst: number }
  logger: Logger
  /** For tests: a dispatcher instead of the SSRF-guarded default. */
  dispatcher?: Dispatcher
}

/** Non-blocking token bucket per key: `tryTake` says no instead of waiting. */
export class PerKeyBudget {
  private readonly buckets = new LRUCache<string, { tokens: number; at: number }>({ max: 10_000 })
  constructor(
    private readonly ratePerSec: number,
    private readonly burst: number,
    private readonly now: () => number = () => performance.now(),
  ) {}

  tryTake(key: string): boolean {
    const now = this.now()
    const b = this.buckets.get(key) ?? { tokens: this.burst, at: now }
    b.tokens = Math.min(this.burst, b.tokens + ((now - b.at) / 1000) * this.ratePerSec)
    b.at = now
    const ok = b.tokens >= 1
    if (ok) b.tokens -= 1
    this.buckets.set(key, b)
    return ok
  }
}

const MAX_RESPONSE_BYTES = 16 * 1024

export function createRepoStatusCheck(opts: RepoStatusCheckOptions): RepoStatusCheck {
  const policy = { allowLoopback: opts.allowInsecure }
  const dispatcher = opts.dispatcher ?? createGuardedDispatcher({ allowLoopback: opts.allowInsecure, responseTimeoutMs: opts.timeoutMs ?? 5_000 })
  const rate = opts.perHostRate ?? { ratePerSec: 2, burst: 10 }
  const budget = new PerKeyBudget(rate.ratePerSec, rate.burst)
  return async (host, did) => {
    if (!budget.tryTake(host.hostname)) return null
    const scheme = host.ssl ? 'https' : 'http'
    const url = new URL(`${scheme}://${host.hostname}/xrpc/com.atproto.sync.getRepoStatus`)
    url.searchParams.set('did', did)
    try {
      const res = await fetchBounded(url, {
        dispatcher,
        checkUrl: (u) => assertPublicUrl(u, policy),
        accept: 'application/json',
        maxBytes: MAX_RESPONSE_BYTES,
        timeoutMs: opts.timeoutMs ?? 5_000,
        maxRedirects: 0,
      })
      if (res.status !== 200) {
        opts.logger.debug({ host: host.hostname, did, status: res.status }, 'getRepoStatus did not answer 200')
        return null
      }
      const json = JSON.parse(res.body.toString('utf8')) as unknown
      if (typeof json !== 'object' || json === null) return null
      const { did: gotDid, active, status } = json as Record<string, unknown>
      if (gotDid !== did || typeof active !== 'boolean') return null
      return typeof status === 'string' ? { active, status } : { active }
    } catch (err) {
      opts.logger.debug({ err, host: host.hostname, did }, 'getRepoStatus failed')
      return null
    }
  }
}
