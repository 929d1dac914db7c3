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
import { fetchBounded } from '../net/http-fetch.js'
import { assertPublicUrl, createGuardedDispatcher } from '../net/net-guard.js'
import { KeyedTokenBucket } from '../identity/rate-limit.js'
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

/** A getRepoStatus answer is a few fields of JSON. */
const MAX_RESPONSE_BYTES = 16 * 1024
/** The whole request, as indigo. */
const TIMEOUT_MS = 5_000
/** Re-checks are rare (only stale-looking inactive statuses): a small budget per host is plenty. */
const PER_HOST_RATE = { ratePerSec: 2, burst: 10 }

export function createRepoStatusCheck(opts: RepoStatusCheckOptions): RepoStatusCheck {
  const policy = { allowLoopback: opts.allowInsecure }
  const dispatcher = opts.dispatcher ?? createGuardedDispatcher({ allowLoopback: opts.allowInsecure, responseTimeoutMs: opts.timeoutMs ?? TIMEOUT_MS })
    // Non-blocking: when a host's budget is spent the check is skipped, not delayed.
  const budget = new KeyedTokenBucket(opts.perHostRate ?? PER_HOST_RATE)
  return async (host, did) => {
    if (!budget.tryTake(host.hostname).allowed) return null
    const scheme = host.ssl ? 'https' : 'http'
    const url = new URL(`${scheme}://${host.hostname}/xrpc/com.atproto.sync.getRepoStatus`)
    url.searchParams.set('did', did)
    try {
      const res = await fetchBounded(url, {
        dispatcher,
        checkUrl: (u) => assertPublicUrl(u, policy),
        accept: 'application/json',
        maxBytes: MAX_RESPONSE_BYTES,
        timeoutMs: opts.timeoutMs ?? TIMEOUT_MS,
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
