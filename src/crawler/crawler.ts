/**
 * The host registry and lifecycle: one HostConnection per host that is not
 * banned, admission of new hosts, admin changes applied live, and the host
 * status written where operators see it (DESIGN §7).
 *
 * Restart rule: every host that is not banned is resubscribed, whatever its
 * status (`offline` and `idle` included): a host is never left dark because of
 * what happened before the restart. With RELAY_FUTURE_CURSOR=stop an idle host
 * is therefore tried once more per restart (and per requestCrawl).
 *
 * Host-table writes: status, last_error/last_error_at, updated_at, admin
 * fields. `cursor` is written only by the FutureCursor reset; the sequencer
 * persists cursors otherwise.
 */
import { setTimeout as sleep } from 'node:timers/promises'
import type { Logger } from 'pino'
import type { Registry } from 'prom-client'
import type { HostStats } from '../stats/host-stats.js'
import type { AddressLookup } from '../net/net-guard.js'
import type { Storage } from '../storage/db.js'
import type { Host, HostStatus } from '../storage/types.js'
import { Admission, type AdmissionPolicy, type AdmissionResult, type HostLifecycle } from './admission.js'
import { DEFAULT_BACKOFF, type BackoffOptions } from '../backoff.js'
import { DialPacer } from './dial-pacing.js'
import { HostConnection, type ConnectionFailure, type ConnectionInfo } from './host-connection.js'
import { findHost, insertHost, loadConnectableHosts } from './host-store.js'
import { HostWrites } from './host-writes.js'
import type { ParsedHostname } from './hostname.js'
import { CrawlerMetrics } from './metrics.js'
import type { RateLimitedView } from './rate-limit-episode.js'
import type { FutureCursorPolicy, HostCursorSource, IngestSink, UpstreamHost } from './types.js'

export interface CrawlerOptions extends AdmissionPolicy {
  storage: Storage
  sink: IngestSink
  stats: HostStats
  /** The sequencer (owner of host cursors). */
  sequencer: HostCursorSource
  /** RELAY_FUTURE_CURSOR */
  futureCursorPolicy: FutureCursorPolicy
  /** Reconnect backoff; default 1 s base, 3 min cap. */
  backoff?: BackoffOptions
  /** Keepalive ping interval; 30 s by default. Silence for 3 intervals drops the connection. */
  pingIntervalMs?: number
  /** WebSocket handshake timeout; 10 s by default. */
  handshakeTimeoutMs?: number
  /** How long without a rate-limit wait ends a host's rate-limit episode (tests shorten it). */
  rateLimitQuietMs?: number
  /** DNS resolution for every outbound connection (tests inject one). */
  addressLookup?: AddressLookup
  /** Start-up dials are paced at one per this many ms on average, so thousands of hosts do not dial at once; 1 ms by default. */
  startStaggerMs?: number
  logger: Logger
  registry: Registry
}

export interface HostConnectionStatus extends ConnectionInfo {
  /** The host's status as written to the database. */
  status: HostStatus
}

const BLOCKED_MESSAGE = 'blocked by the relay operator'

export class Crawler implements HostLifecycle {
  readonly admission: Admission
  readonly metrics: CrawlerMetrics
  private readonly opts: CrawlerOptions
  private readonly log: Logger
  private readonly conns = new Map<number, HostConnection>()
  private readonly hostWrites: HostWrites
  private stopping = false
  private stopped: Promise<void> | undefined

  constructor(opts: CrawlerOptions) {
    this.opts = opts
    this.log = opts.logger.child({ component: 'crawler' })
    this.metrics = new CrawlerMetrics(opts.registry)
    this.hostWrites = new HostWrites(opts.storage, this.log)
    this.admission = new Admission({
      storage: opts.storage,
      hosts: this,
      allowInsecureHosts: opts.allowInsecureHosts,
      trustedDomains: opts.trustedDomains,
      defaultAccountLimit: opts.defaultAccountLimit,
      trustedAccountLimit: opts.trustedAccountLimit,
      newHostsPerDay: opts.newHostsPerDay,
      disableRequestCrawl: opts.disableRequestCrawl,
      ...(opts.describeTimeoutMs !== undefined ? { describeTimeoutMs: opts.describeTimeoutMs } : {}),
      ...(opts.failureTtlMs !== undefined ? { failureTtlMs: opts.failureTtlMs } : {}),
      ...(opts.probeIntervalMs !== undefined ? { probeIntervalMs: opts.probeIntervalMs } : {}),
      addressLookup: opts.addressLookup,
      logger: this.log,
      metrics: this.metrics,
    })
  }

  /** Resubscribes every host that is not banned. */
  async start(): Promise<void> {
    const hosts = await loadConnectableHosts(this.opts.storage.db)
    this.log.info({ hosts: hosts.length }, 'resubscribing hosts')
    const pacer = new DialPacer(this.opts.startStaggerMs ?? 1)
    for (const host of hosts) {
      if (this.stopping) return
      this.connect(host)
      const wait = pacer.dialled()
      if (wait >= 1) await sleep(wait)
    }
  }

  /** Public requestCrawl (see Admission). */
  requestCrawl(hostname: string, opts: { admin?: boolean } = {}): Promise<AdmissionResult> {
    return this.admission.requestCrawl(hostname, opts)
  }

  /** Admin: admit a host, bypassing the public switch and the per-day limit (not the checks). */
  addHost(hostname: string): Promise<AdmissionResult> {
    return this.admission.requestCrawl(hostname, { admin: true })
  }

  /** Admin: status banned, connection closed. False for an unknown host. */
  async blockHost(hostname: string): Promise<boolean> {
    const host = await this.findByName(hostname)
    if (!host) return false
    // Disconnect first: a connection that opens meanwhile would otherwise mark the blocked host active again.
    const wasConnected = this.conns.has(host.id)
    await this.disconnect(host.id)
    try {
      await this.hostWrites.adminWrite(host, { status: 'banned', lastError: BLOCKED_MESSAGE })
    } catch (err) {
      // Not stored, so not blocked: the host gets its connection back, as it was.
      if (wasConnected && !this.stopping) this.connect(host)
      throw err
    }
    this.log.warn({ host: host.hostname }, 'host blocked')
    return true
  }

  /** Admin: status active again and reconnected. False for an unknown host. */
  async unblockHost(hostname: string): Promise<boolean> {
    const host = await this.findByName(hostname)
    if (!host) return false
    // The block message described the block, not the host: it goes with it. A real last error stays.
    if (host.status === 'banned') await this.hostWrites.adminWrite(host, { status: 'active', ...(host.last_error === BLOCKED_MESSAGE ? { lastError: null } : {}) })
    if (!this.stopping) this.connect({ ...host, status: 'active' })
    this.log.info({ host: host.hostname }, 'host unblocked')
    return true
  }

  /** Admin: changes the account limit; the host's event rate limits follow at once. */
  async setAccountLimit(hostname: string, accountLimit: number): Promise<boolean> {
    if (!Number.isSafeInteger(accountLimit) || accountLimit < 0) throw new RangeError(`invalid account limit ${accountLimit}`)
    const host = await this.findByName(hostname)
    if (!host) return false
    await this.hostWrites.adminWrite(host, { accountLimit })
    const conn = this.conns.get(host.id)
    if (conn) {
      conn.host.accountLimit = accountLimit
      conn.refreshLimits()
    }
    return true
  }

  /** Admin: per-host strictness override (null follows RELAY_LENIENT). Ingest sees it on the next frame. */
  async setLenient(hostname: string, lenient: boolean | null): Promise<boolean> {
    const host = await this.findByName(hostname)
    if (!host) return false
    await this.hostWrites.adminWrite(host, { lenient })
    const conn = this.conns.get(host.id)
    if (conn) conn.host.lenient = lenient
    return true
  }

  /** Admin: forget the host's cursor (e.g. after it reset its sequence) and reconnect live. */
  async resetHostCursor(hostname: string): Promise<boolean> {
    const host = await this.findByName(hostname)
    if (!host) return false
    this.opts.sequencer.resetHost(host.id)
    const conn = this.conns.get(host.id)
    conn?.resetCursor()
    await this.hostWrites.adminWrite(host, { resetCursor: true, lastError: 'cursor reset by the relay operator' })
    if (conn) {
      // An open connection is on the old cursor: start over.
      await this.disconnect(host.id)
    }
    if (host.status !== 'banned' && !this.stopping) this.connect({ ...host, cursor: 0 }, { startLive: true })
    return true
  }

  /** Live state of every host connection. */
  connections(): HostConnectionStatus[] {
    return [...this.conns.values()].map((c) => this.statusOf(c))
  }

  /** Hostname and open time (ms) of every open connection, built from nothing but those two fields (for /metrics). */
  *openConnections(): Generator<{ hostname: string; openSince: number }> {
    for (const c of this.conns.values()) {
      const openSince = c.openSince
      if (openSince !== null) yield { hostname: c.host.hostname, openSince }
    }
  }

  connection(hostname: string): HostConnectionStatus | undefined {
    const name = hostname.toLowerCase()
    for (const c of this.conns.values()) if (c.host.hostname === name) return this.statusOf(c)
    return undefined
  }

  /** Hosts held back by their rate limits now (or within the episode's quiet period), by hostname. */
  rateLimitedHosts(): Map<string, RateLimitedView> {
    const held = new Map<string, RateLimitedView>()
    for (const c of this.conns.values()) {
      const view = c.rateLimitedView()
      if (view) held.set(c.host.hostname, view)
    }
    return held
  }

  private statusOf(conn: HostConnection): HostConnectionStatus {
    return { ...conn.info(), status: this.hostWrites.statusOf(conn.host.id) }
  }

  /** Closes every connection cleanly and waits for in-flight pushes and status writes. */
  stop(): Promise<void> {
    this.stopped ??= (async () => {
      this.stopping = true
      await Promise.all([...this.conns.values()].map((c) => c.stop()))
      await this.hostWrites.settled()
      await this.admission.close()
    })()
    return this.stopped
  }

  private findByName(hostname: string): Promise<Host | undefined> {
    return findHost(this.opts.storage.db, hostname.toLowerCase())
  }

  // ---------------------------------------------------------------- HostLifecycle (admission)

  async addNewHost(parsed: ParsedHostname, limits: { accountLimit: number; trusted: boolean }): Promise<Host | undefined> {
    const host = await insertHost(this.opts.storage.db, { hostname: parsed.hostname, ssl: parsed.ssl, ...limits })
    if (host && !this.stopping) this.connect(host, { startLive: true })
    return host
  }

  async wakeHost(host: Host): Promise<'connected' | 'reconnecting'> {
    const conn = this.conns.get(host.id)
    const state = conn?.connectionState
    if (state === 'open' || state === 'connecting') return 'connected'
    if (this.stopping) return 'reconnecting'
    if (conn) conn.retryNow()
    else this.connect(host)
    return 'reconnecting'
  }

  async banRelayLoop(parsed: ParsedHostname, server: string, limits: { accountLimit: number; trusted: boolean }): Promise<void> {
    const lastError = relayLoopError(server)
    const known = await findHost(this.opts.storage.db, parsed.hostname)
    if (known) {
      await this.hostWrites.write(known.id, { status: 'banned', lastError })
      await this.disconnect(known.id)
    } else {
      await insertHost(this.opts.storage.db, { hostname: parsed.hostname, ssl: parsed.ssl, ...limits, status: 'banned', lastError })
    }
  }

  // ---------------------------------------------------------------- connections

  /** `startLive`: a host with no cursor yet subscribes live (new admission, cursor reset); see HostConnectionOptions. */
  private connect(row: Host, opts: { startLive?: boolean } = {}): HostConnection {
    const existing = this.conns.get(row.id)
    if (existing) {
      existing.retryNow()
      return existing
    }
    const host: UpstreamHost = {
      id: row.id,
      hostname: row.hostname,
      ssl: row.ssl,
      accountLimit: row.account_limit,
      lenient: row.lenient,
      trusted: row.trusted,
    }
    const conn = new HostConnection({
      host,
      storedCursor: row.cursor,
      startLive: opts.startLive ?? false,
      sink: this.opts.sink,
      stats: this.opts.stats,
      cursors: this.opts.sequencer,
      callbacks: {
        onOpen: (c) => this.onOpen(c),
        onFailure: (c, f) => this.onFailure(c, f),
        onFutureCursor: (c, message, cursor) => this.onFutureCursor(c, message, cursor),
        onRelayLoop: (c, server) => this.onRelayLoop(c, server),
      },
      metrics: this.metrics,
      logger: this.opts.logger,
      allowInsecureHosts: this.opts.allowInsecureHosts,
      addressLookup: this.opts.addressLookup,
      backoff: this.opts.backoff ?? DEFAULT_BACKOFF,
      pingIntervalMs: this.opts.pingIntervalMs ?? 30_000,
      handshakeTimeoutMs: this.opts.handshakeTimeoutMs ?? 10_000,
      rateLimitQuietMs: this.opts.rateLimitQuietMs,
    })
    this.conns.set(row.id, conn)
    this.hostWrites.loaded(row)
    conn.start()
    return conn
  }

  private async disconnect(hostId: number): Promise<void> {
    const conn = this.conns.get(hostId)
    if (!conn) return
    this.conns.delete(hostId)
    await conn.stop()
  }

  private onOpen(conn: HostConnection): void {
    // A connection already let go (blocked, reset) no longer speaks for the host's status, and
    // one that opens while its host is being blocked must not write the block away.
    if (this.conns.get(conn.host.id) !== conn) return
    const status = this.hostWrites.statusOf(conn.host.id)
    if (status !== 'active' && status !== 'banned') void this.hostWrites.write(conn.host.id, { status: 'active' })
  }

  private onFailure(conn: HostConnection, failure: ConnectionFailure): void {
    this.opts.stats.setLastError(conn.host.hostname, failure.message)
    void this.hostWrites.write(conn.host.id, { status: 'offline', lastError: failure.message })
  }

  private onFutureCursor(conn: HostConnection, message: string, cursor: number): void {
    const host = conn.host
    const policy = this.opts.futureCursorPolicy
    const detail = `upstream answered FutureCursor to cursor ${cursor}${message ? ` (${message})` : ''}: the host reset its sequence`
    this.metrics.futureCursor.inc({ action: policy })
    this.opts.stats.setLastError(host.hostname, detail)
    if (policy === 'stop') {
      this.log.warn({ host: host.hostname, cursor }, `${detail}; host set idle (RELAY_FUTURE_CURSOR=stop)`)
      void this.hostWrites.write(host.id, { status: 'idle', lastError: `${detail}; stopped` })
      return
    }
    this.log.warn({ host: host.hostname, cursor }, `${detail}; cursor reset, reconnecting live`)
    this.opts.sequencer.resetHost(host.id)
    conn.resetCursor()
    // Reconnect once the reset is stored: the new sequence's first batch writes the host cursor
    // too, and a reset landing after it would leave the stored cursor at 0.
    void this.hostWrites.write(host.id, { resetCursor: true, lastError: `${detail}; cursor reset to 0, reconnected live` }).then(() => {
      if (!this.stopping) conn.retryNow()
    })
  }

  private onRelayLoop(conn: HostConnection, server: string): void {
    this.log.warn({ host: conn.host.hostname, server }, 'host is a relay (loop); banned')
    this.conns.delete(conn.host.id)
    void conn.stop()
    void this.hostWrites.write(conn.host.id, { status: 'banned', lastError: relayLoopError(server) })
  }
}

function relayLoopError(server: string): string {
  return `relay loop: host answers with Server ${JSON.stringify(server)}`
}
