/**
 * Host admission (`requestCrawl`, its deprecated alias `notifyOfUpdate`, and
 * the admin "add host"). Checks run in the order of ANCHOR-INDIGO §4.1, and
 * every refusal is an XRPC error whose message tells the PDS operator why.
 */
import { LRUCache } from 'lru-cache'
import type { Logger } from 'pino'
import type { Dispatcher } from 'undici'
import { XrpcError, invalidRequest } from '../atproto/xrpc-error.js'
import { configDefault } from '../config.js'
import { createGuardedDispatcher, type AddressLookup, type HostPolicy } from '../net/net-guard.js'
import type { Storage } from '../storage/db.js'
import type { Host } from '../storage/types.js'
import { describeServer, DescribeServerError } from './describe-server.js'
import { isRelayServerHeader } from './upstream-dial.js'
import { findHost } from './host-store.js'
import { findDomainBan, HostnameError, parseHostname, TrustedDomains, type ParsedHostname } from './hostname.js'
import type { CrawlerMetrics } from './metrics.js'

/** What admission asks of the crawler once a host has passed the checks. */
export interface HostLifecycle {
  /** Inserts a new host and starts its connection; returns undefined when it already existed (a concurrent request). */
  addNewHost(parsed: ParsedHostname, limits: { accountLimit: number; trusted: boolean }): Promise<Host | undefined>
  /** A known host that is not banned: connect it now unless it is connected. */
  wakeHost(host: Host): Promise<'connected' | 'reconnecting'>
  /** Relay loop: mark the host banned (inserting it if new) and drop any connection. */
  banRelayLoop(parsed: ParsedHostname, server: string, limits: { accountLimit: number; trusted: boolean }): Promise<void>
}

export type AdmissionOutcome = 'added' | 'reconnecting' | 'connected'

export interface AdmissionResult {
  hostname: string
  outcome: AdmissionOutcome
}

/** The admission rules as configured; the crawler takes the same settings and hands them on. */
export interface AdmissionPolicy {
  /** RELAY_ALLOW_INSECURE_HOSTS */
  allowInsecureHosts: boolean
  /** RELAY_TRUSTED_DOMAINS */
  trustedDomains: readonly string[]
  /** RELAY_DEFAULT_ACCOUNT_LIMIT */
  defaultAccountLimit: number
  /** RELAY_TRUSTED_ACCOUNT_LIMIT */
  trustedAccountLimit: number
  /** RELAY_NEW_HOSTS_PER_DAY (changeable at run time with Admission.setNewHostsPerDay) */
  newHostsPerDay: number
  /** RELAY_DISABLE_REQUEST_CRAWL */
  disableRequestCrawl: boolean
  /** describeServer probe timeout at admission; 5 s by default. */
  describeTimeoutMs?: number
  /** RELAY_CRAWL_FAILURE_TTL: a name that failed validation or describeServer is refused from memory this long. */
  failureTtlMs?: number
  /** RELAY_CRAWL_PROBE_INTERVAL: a known host is probed at most once per this interval. */
  probeIntervalMs?: number
}

export interface AdmissionOptions extends AdmissionPolicy {
  storage: Storage
  hosts: HostLifecycle
  addressLookup?: AddressLookup | undefined
  logger: Logger
  metrics?: CrawlerMetrics
  now?: () => number
}

const DAY_MS = 86_400_000
/** Names remembered by each cache; the oldest are forgotten first, so a spray of names cannot grow memory. */
const CACHED_NAMES = 10_000

export class Admission {
  private readonly opts: AdmissionOptions
  private readonly policy: HostPolicy
  private readonly dispatcher: Dispatcher
  private readonly trusted: TrustedDomains
  private readonly describeTimeoutMs: number
  private readonly now: () => number
  /** Times of public admissions of new hosts in the last 24 h (in memory, as indigo). */
  private admitted: number[] = []
  private perDay: number
  private disabled: boolean
  /** Public requests for these names failed validation or describeServer recently: refused again without a lookup. */
  private readonly failed: LRUCache<string, XrpcError> | undefined
  /** Known hosts probed recently: woken from state without another describeServer. */
  private readonly probed: LRUCache<string, true> | undefined

  constructor(opts: AdmissionOptions) {
    this.opts = opts
    this.policy = { allowLoopback: opts.allowInsecureHosts }
    this.trusted = new TrustedDomains(opts.trustedDomains)
    this.now = opts.now ?? Date.now
    this.perDay = opts.newHostsPerDay
    this.disabled = opts.disableRequestCrawl
    this.describeTimeoutMs = opts.describeTimeoutMs ?? 5_000
    const failureTtl = opts.failureTtlMs ?? configDefault('crawlFailureTtlMs')
    const probeInterval = opts.probeIntervalMs ?? configDefault('crawlProbeIntervalMs')
    if (failureTtl > 0) this.failed = new LRUCache({ max: CACHED_NAMES, ttl: failureTtl })
    if (probeInterval > 0) this.probed = new LRUCache({ max: CACHED_NAMES, ttl: probeInterval })
    this.dispatcher = createGuardedDispatcher({
      allowLoopback: opts.allowInsecureHosts,
      connectTimeoutMs: this.describeTimeoutMs,
      responseTimeoutMs: this.describeTimeoutMs,
      ...(opts.addressLookup ? { lookup: opts.addressLookup } : {}),
    })
  }

  setNewHostsPerDay(limit: number): void {
    if (!Number.isSafeInteger(limit) || limit < 0) throw new RangeError(`invalid new-hosts-per-day limit ${limit}`)
    this.perDay = limit
  }

  setDisableRequestCrawl(disabled: boolean): void {
    this.disabled = disabled
  }

  /** The new-hosts-per-day window as operators see it. */
  newHostsWindow(): { limit: number; used: number; nextSlotAt: string | null; disabled: boolean } {
    this.prune()
    const full = this.admitted.length >= this.perDay
    const first = this.admitted[0]
    return {
      limit: this.perDay,
      used: this.admitted.length,
      nextSlotAt: full && first !== undefined ? new Date(first + DAY_MS).toISOString() : null,
      disabled: this.disabled,
    }
  }

  /** True when `hostname` (stored form) matches RELAY_TRUSTED_DOMAINS. */
  isTrusted(hostname: string): boolean {
    return this.trusted.matches(hostname)
  }

  /** The account limit and trust a host gets when admitted. */
  limitsFor(hostname: string): { accountLimit: number; trusted: boolean } {
    const trusted = this.trusted.matches(hostname)
    return { trusted, accountLimit: trusted ? this.opts.trustedAccountLimit : this.opts.defaultAccountLimit }
  }

  /** Throws XrpcError with a message for the PDS operator when the host is refused. */
  async requestCrawl(input: string, opts: { admin?: boolean } = {}): Promise<AdmissionResult> {
    try {
      const result = await this.admit(input, opts.admin ?? false)
      this.opts.metrics?.admissions.inc({ result: result.outcome })
      return result
    } catch (err) {
      this.opts.metrics?.admissions.inc({ result: err instanceof XrpcError ? err.error : 'error' })
      throw err
    }
  }

  private async admit(input: string, admin: boolean): Promise<AdmissionResult> {
    const db = this.opts.storage.db
    if (!admin && this.disabled) throw new XrpcError(403, 'Forbidden', 'this relay does not accept public requestCrawl; ask its operator')
    const asked = input.trim().toLowerCase()
    if (!admin) this.refuseIfFailedRecently(asked)
    let parsed: ParsedHostname
    try {
      parsed = parseHostname(input, { allowInsecureHosts: this.opts.allowInsecureHosts })
    } catch (err) {
      if (err instanceof HostnameError) throw this.remember(asked, invalidRequest(`invalid hostname: ${err.message}`))
      throw err
    }
    const { hostname } = parsed
    if (!admin) this.refuseIfFailedRecently(hostname)
    const log = this.opts.logger.child({ host: hostname })
    const ban = await findDomainBan(db, hostname)
    if (ban !== undefined) throw new XrpcError(400, 'HostBanned', `${hostname} is banned by this relay (domain ${ban})`)
    let known = await findHost(db, hostname)
    if (known?.status === 'banned') throw hostBanned(hostname)

    // A known host probed within RELAY_CRAWL_PROBE_INTERVAL is just woken: no new lookup or probe.
    if (known && !admin && this.probed?.has(hostname)) {
      this.opts.metrics?.probesSkipped.inc({ reason: 'probed_recently' })
      return { hostname, outcome: await this.opts.hosts.wakeHost(known) }
    }

    let server: string | undefined
    try {
      server = (await describeServer(hostname, parsed.ssl, { dispatcher: this.dispatcher, policy: this.policy, timeoutMs: this.describeTimeoutMs })).server
    } catch (err) {
      if (!(err instanceof DescribeServerError)) throw err
      if (isRelayServerHeader(err.server)) server = err.server
      else {
        log.info({ reason: err.reason, err: err.message }, 'requestCrawl refused: describeServer failed')
        throw this.remember(hostname, new XrpcError(502, 'UpstreamFailure', `could not reach ${hostname}: com.atproto.server.describeServer: ${err.message}`))
      }
    }
    if (isRelayServerHeader(server)) {
      log.warn({ server }, 'requestCrawl from a relay refused (loop); host banned')
      await this.opts.hosts.banRelayLoop(parsed, server ?? '', this.limitsFor(hostname))
      throw new XrpcError(400, 'HostBanned', `${hostname} is a relay (Server: ${server}); crawling it would make a loop`)
    }

    this.failed?.delete(asked)
    this.failed?.delete(hostname)
    this.probed?.set(hostname, true)

    // Re-read: the probe took time and a concurrent request may have added or banned it.
    known = await findHost(db, hostname)
    if (known) {
      if (known.status === 'banned') throw hostBanned(hostname)
      const outcome = await this.opts.hosts.wakeHost(known)
      if (outcome === 'reconnecting') log.info({ status: known.status }, 'requestCrawl: reconnecting known host')
      return { hostname, outcome }
    }

    if (!admin) this.takeSlot(hostname)
    const added = await this.opts.hosts.addNewHost(parsed, this.limitsFor(hostname))
    if (!added) {
      if (!admin) this.admitted.pop()
      const now = await findHost(db, hostname)
      if (now && now.status !== 'banned') return { hostname, outcome: await this.opts.hosts.wakeHost(now) }
      throw hostBanned(hostname)
    }
    log.info({ admin, trusted: added.trusted, accountLimit: added.account_limit }, 'new host admitted')
    return { hostname, outcome: 'added' }
  }

  /** Refuses a name that failed recently with the same error, without a lookup or probe. */
  private refuseIfFailedRecently(name: string): void {
    const failure = this.failed?.get(name)
    if (!failure) return
    this.opts.metrics?.probesSkipped.inc({ reason: 'failed_recently' })
    const retryAfter = Math.max(1, Math.ceil(this.failed!.getRemainingTTL(name) / 1000))
    throw new XrpcError(failure.status, failure.error, `${failure.message} (remembered; ask again in ${retryAfter} s)`, { 'Retry-After': String(retryAfter) })
  }

  /** Remembers a public request's failure for RELAY_CRAWL_FAILURE_TTL; returns it to throw. */
  private remember(name: string, failure: XrpcError): XrpcError {
    this.failed?.set(name, failure)
    return failure
  }

  /** Reserves a slot in the per-day window or throws RateLimitExceeded. */
  private takeSlot(hostname: string): void {
    this.prune()
    if (this.admitted.length >= this.perDay) {
      const first = this.admitted[0]
      const retryAfter = first === undefined ? DAY_MS / 1000 : Math.max(1, Math.ceil((first + DAY_MS - this.now()) / 1000))
      throw new XrpcError(
        429,
        'RateLimitExceeded',
        `this relay admits at most ${this.perDay} new hosts per day; ${hostname} can ask again in ${retryAfter} s`,
        { 'Retry-After': String(retryAfter) },
      )
    }
    this.admitted.push(this.now())
  }

  private prune(): void {
    const cutoff = this.now() - DAY_MS
    let i = 0
    while (i < this.admitted.length && (this.admitted[i] as number) <= cutoff) i++
    if (i > 0) this.admitted = this.admitted.slice(i)
  }

  async close(): Promise<void> {
    await this.dispatcher.close()
  }
}

function hostBanned(hostname: string): XrpcError {
  return new XrpcError(400, 'HostBanned', `${hostname} is banned by this relay`)
}
