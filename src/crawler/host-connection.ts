/**
 * One subscribeRepos connection to one upstream host, kept alive forever:
 * dial (SSRF-checked), read frames, hand message frames to ingest in order,
 * hold the socket back when ingest or the host's rate limits say so, and
 * redial with exponential backoff and full jitter whenever it ends.
 *
 * Decisions that touch the database or other hosts (status, FutureCursor
 * policy, relay loops) are reported to the crawler through callbacks.
 */
import type { IncomingMessage } from 'node:http'
import type { LookupFunction } from 'node:net'
import type { Logger } from 'pino'
import WebSocket from 'ws'
import { binaryMessageBytes, decodeFrame, FrameError, MAX_FRAME_BYTES, type MessageFrame } from '../atproto/frame.js'
import type { HostStats } from '../ingest/host-stats.js'
import { assertPublicUrl, createGuardedLookup, findNetGuardError, type AddressLookup, type HostPolicy } from '../identity/net-guard.js'
import { VERSION } from '../package-root.js'
import { backoffDelay, type BackoffOptions } from './backoff.js'
import type { CrawlerMetrics } from './metrics.js'
import { HostRateLimiter, hostRateLimits, type RateLimitState } from './rate-limit.js'
import { RateLimitEpisode, type RateLimitedView } from './rate-limit-episode.js'
import type { HostCursorSource, IngestSink, UpstreamHost } from './types.js'

/** Sent upstream on every request; the `atproto-relay` token lets hosts and other relays detect loops. */
export const USER_AGENT = `atrelay/${VERSION} (atproto-relay)`

/** A `Server` (or `Via`) header containing this marks a relay: crawling it would make a loop. */
export function isRelayServerHeader(value: string | string[] | undefined): boolean {
  const v = Array.isArray(value) ? value.join(' ') : (value ?? '')
  return v.toLowerCase().includes('atproto-relay')
}

export type ConnectionState = 'connecting' | 'open' | 'backoff' | 'stopped'
export type HoldReason = 'backpressure' | 'rate-limit'

export interface ConnectionFailure {
  /** Short machine-readable cause, also the metrics label. */
  reason: string
  message: string
}

export interface ConnectionCallbacks {
  onOpen(conn: HostConnection): void
  /** The connection ended or the dial failed; a retry is scheduled. */
  onFailure(conn: HostConnection, failure: ConnectionFailure): void
  /** The host answered FutureCursor to a cursor; the connection is stopped until the crawler decides. */
  onFutureCursor(conn: HostConnection, message: string, cursor: number): void
  /** The host's Server header says it is a relay; the connection is stopped. */
  onRelayLoop(conn: HostConnection, serverHeader: string): void
}

export interface HostConnectionOptions {
  host: UpstreamHost
  /** host.cursor from the database when the connection was created (0 = none). */
  storedCursor: number
  /**
   * With no cursor (0), subscribe live: true for a host admitted just now. Otherwise a 0
   * cursor is sent as `cursor=0`: after a restart, events a host sent before it were maybe
   * received but never handled (the cursor could not pass them) and must be fetched again.
   */
  startLive?: boolean
  sink: IngestSink
  stats: HostStats
  cursors: HostCursorSource
  callbacks: ConnectionCallbacks
  metrics: CrawlerMetrics
  logger: Logger
  /** Development: localhost hosts and loopback addresses. */
  allowInsecureHosts: boolean
  addressLookup?: AddressLookup | undefined
  backoff: BackoffOptions
  pingIntervalMs: number
  handshakeTimeoutMs: number
  /** How long without a rate-limit wait ends a rate-limit episode (default 10 s). */
  rateLimitQuietMs?: number | undefined
}

export interface ConnectionInfo {
  hostId: number
  hostname: string
  state: ConnectionState
  connectedSince: string | null
  /** The latest upstream seq seen (or the cursor the next dial will use). */
  cursor: number
  /** Consecutive failed connections (0 after a connection that delivered events). */
  attempt: number
  nextRetryAt: string | null
  lastError: string | null
  /** Why reading is paused, or null. */
  heldBack: HoldReason | null
  /** Held back by its rate limits now or within the last few seconds (one episode), or null. */
  rateLimited: RateLimitedView | null
  /** Parsed frames waiting for ingest or the rate limits. */
  queued: number
  rateLimits: RateLimitState
}

interface Session {
  ws: WebSocket
  /** The cursor this dial asked for (0 = live). */
  cursor: number
  /** Highest seq on this socket: seqs must strictly increase per connection. */
  lastSeq: number
  opened: boolean
  delivered: number
  /** Why it ended, set by whoever ends it first. */
  failure?: ConnectionFailure
  retryAfterMs?: number
  outcome?: { kind: 'future-cursor'; message: string } | { kind: 'relay-loop'; server: string }
}

interface Queued {
  frame: MessageFrame
  seq: number | null
}

const CLOSE_GRACE_MS = 1_000
const MAX_UPSTREAM_TEXT = 500

/** Upstream-chosen text, cut to a size fit for logs and status. */
function clip(text: string): string {
  return text.length > MAX_UPSTREAM_TEXT ? `${text.slice(0, MAX_UPSTREAM_TEXT)}…` : text
}

export class HostConnection {
  readonly host: UpstreamHost
  private readonly opts: HostConnectionOptions
  private readonly log: Logger
  private readonly limiter: HostRateLimiter
  private readonly lookup: LookupFunction
  private readonly policy: HostPolicy
  private session: Session | undefined
  private state: ConnectionState = 'stopped'
  private closed = false
  private storedCursor: number
  private startLive: boolean
  private lastSeqSeen = 0
  private attempt = 0
  private retryTimer: NodeJS.Timeout | undefined
  private nextRetryAt: number | null = null
  private pingTimer: NodeJS.Timeout | undefined
  private rateTimer: NodeJS.Timeout | undefined
  private lastActivity = 0
  private connectedSince: number | null = null
  private lastError: string | null = null
  private queue: Queued[] = []
  private awaiting: Promise<void> | undefined
  private pumping = false
  private held: HoldReason | null = null
  private readonly rateLimited: RateLimitEpisode

  constructor(opts: HostConnectionOptions) {
    this.opts = opts
    this.host = opts.host
    this.storedCursor = opts.storedCursor
    this.startLive = opts.startLive ?? false
    this.log = opts.logger.child({ host: opts.host.hostname })
    this.limiter = new HostRateLimiter(hostRateLimits(opts.host.accountLimit, opts.host.trusted))
    this.rateLimited = new RateLimitEpisode(this.log, opts.metrics.rateLimitedHosts, opts.rateLimitQuietMs)
    this.policy = { allowLoopback: opts.allowInsecureHosts }
    this.lookup = createGuardedLookup(this.policy, opts.addressLookup)
  }

  /** Dial now. */
  start(): void {
    if (this.closed || this.state === 'connecting' || this.state === 'open') return
    this.clearRetry()
    this.dial()
  }

  /** Dial now if waiting for a retry or stopped after FutureCursor; an open connection is left alone. */
  retryNow(): void {
    if (this.closed || this.state === 'connecting' || this.state === 'open') return
    this.attempt = 0
    this.start()
  }

  /** The host reset its sequence: forget every seq seen and start live. Queued frames of the old sequence are dropped. */
  resetCursor(): void {
    this.lastSeqSeen = 0
    this.storedCursor = 0
    this.startLive = true
    this.queue = []
  }

  /** Account limit or trust changed: rate limits follow at once. */
  refreshLimits(): void {
    this.limiter.setLimits(hostRateLimits(this.host.accountLimit, this.host.trusted))
    if (this.held === 'rate-limit') {
      clearTimeout(this.rateTimer)
      this.rateTimer = undefined
      this.pump()
    }
  }

  get connectionState(): ConnectionState {
    return this.state
  }

  info(): ConnectionInfo {
    return {
      hostId: this.host.id,
      hostname: this.host.hostname,
      state: this.state,
      connectedSince: this.connectedSince === null ? null : new Date(this.connectedSince).toISOString(),
      cursor: this.dialCursor(),
      attempt: this.attempt,
      nextRetryAt: this.nextRetryAt === null ? null : new Date(this.nextRetryAt).toISOString(),
      lastError: this.lastError,
      heldBack: this.held,
      rateLimited: this.rateLimited.view(),
      queued: this.queue.length,
      rateLimits: this.limiter.state(),
    }
  }

  rateLimitedView(): RateLimitedView | null {
    return this.rateLimited.view()
  }

  /** Close cleanly and wait for the push ingest is still holding. Frames not yet pushed are dropped (the cursor never passed them). */
  async stop(): Promise<void> {
    if (this.closed) return
    this.closed = true
    this.clearRetry()
    clearTimeout(this.rateTimer)
    this.rateTimer = undefined
    this.rateLimited.stop()
    this.queue = []
    const s = this.session
    if (s && s.ws.readyState !== WebSocket.CLOSED) {
      const closed = new Promise<void>((resolve) => s.ws.once('close', () => resolve()))
      // A paused socket would never read the peer's close reply.
      s.ws.resume()
      s.ws.close(1000, 'relay closing connection')
      const timer = setTimeout(() => s.ws.terminate(), CLOSE_GRACE_MS)
      await closed
      clearTimeout(timer)
    }
    this.state = 'stopped'
    if (this.awaiting) await this.awaiting
    this.release()
  }

  // ---------------------------------------------------------------- dialing

  /** Resume after everything seen in this process; else the sequencer's cursor; else the stored one. */
  private dialCursor(): number {
    return Math.max(this.lastSeqSeen, this.opts.cursors.hostCursor(this.host.id) ?? 0, this.storedCursor)
  }

  private dial(): void {
    this.state = 'connecting'
    this.opts.metrics.attempts.inc()
    const cursor = this.dialCursor()
    const scheme = this.host.ssl ? 'wss' : 'ws'
    const live = cursor === 0 && this.startLive
    const url = `${scheme}://${this.host.hostname}/xrpc/com.atproto.sync.subscribeRepos${live ? '' : `?cursor=${cursor}`}`
    try {
      assertPublicUrl(new URL(`${this.host.ssl ? 'https' : 'http'}://${this.host.hostname}/`), this.policy)
    } catch (err) {
      this.failBeforeSocket({ reason: 'forbidden-host', message: `refusing to connect: ${(err as Error).message}` })
      return
    }
    const wsOptions: WebSocket.ClientOptions & { lookup: LookupFunction } = {
      maxPayload: MAX_FRAME_BYTES,
      perMessageDeflate: false,
      handshakeTimeout: this.opts.handshakeTimeoutMs,
      followRedirects: false,
      headers: { 'User-Agent': USER_AGENT },
      lookup: this.lookup,
    }
    const ws = new WebSocket(url, wsOptions)
    const session: Session = { ws, cursor, lastSeq: 0, opened: false, delivered: 0 }
    this.session = session
    this.log.debug({ cursor, attempt: this.attempt }, 'dialing host')

    ws.on('upgrade', (res: IncomingMessage) => {
      if (isRelayServerHeader(res.headers.server)) {
        session.outcome = { kind: 'relay-loop', server: String(res.headers.server) }
        ws.terminate()
      }
    })
    ws.on('unexpected-response', (_req, res: IncomingMessage) => {
      const retryAfter = Number(res.headers['retry-after'])
      if (Number.isFinite(retryAfter) && retryAfter > 0) session.retryAfterMs = Math.min(retryAfter * 1_000, 3_600_000)
      session.failure ??= { reason: `http-${res.statusCode}`, message: `subscribeRepos upgrade refused with HTTP ${res.statusCode}` }
      res.resume()
      ws.terminate()
    })
    ws.on('open', () => this.onOpen(session))
    ws.on('message', (data: Buffer | ArrayBuffer | Buffer[], isBinary: boolean) => this.onMessage(session, data, isBinary))
    ws.on('ping', () => (this.lastActivity = Date.now()))
    ws.on('pong', () => (this.lastActivity = Date.now()))
    ws.on('error', (err: Error & { code?: string }) => this.onError(session, err))
    ws.on('close', (code: number, reason: Buffer) => this.onClose(session, code, reason.toString('utf8')))
  }

  private onOpen(session: Session): void {
    if (session !== this.session || session.outcome || this.closed) return
    session.opened = true
    this.state = 'open'
    this.connectedSince = Date.now()
    this.lastActivity = Date.now()
    this.opts.metrics.connectedHosts.inc()
    if (this.held) session.ws.pause()
    this.pingTimer = setInterval(() => this.keepalive(session), this.opts.pingIntervalMs)
    this.log.info({ cursor: session.cursor }, 'connected to host')
    this.opts.callbacks.onOpen(this)
  }

  private keepalive(session: Session): void {
    if (session !== this.session || !session.opened) return
    // While we hold the socket back we read nothing, pongs included: not the host's fault.
    if (this.held === null && Date.now() - this.lastActivity > this.opts.pingIntervalMs * 3) {
      this.end(session, { reason: 'timeout', message: `no traffic or pong for ${Math.round((Date.now() - this.lastActivity) / 1000)} s` })
      return
    }
    session.ws.ping()
  }

  private onError(session: Session, err: Error & { code?: string }): void {
    if (err.code === 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH') {
      this.opts.stats.dropped(this.host.hostname, 'too-big')
      session.failure ??= { reason: 'too-big', message: `frame larger than ${MAX_FRAME_BYTES} bytes` }
      return
    }
    const guard = findNetGuardError(err)
    if (guard) {
      session.failure ??= { reason: 'forbidden-host', message: `refusing to connect: ${guard.message}` }
      return
    }
    const reason = session.opened ? (err.code?.startsWith('WS_ERR_') ? 'ws-protocol' : 'socket') : 'dial'
    session.failure ??= { reason, message: `${session.opened ? 'connection error' : 'connection failed'}: ${err.code ?? err.message}` }
  }

  private onClose(session: Session, code: number, reason: string): void {
    if (session.opened) this.opts.metrics.connectedHosts.dec()
    clearInterval(this.pingTimer)
    this.pingTimer = undefined
    if (session !== this.session) return
    this.connectedSince = null
    if (this.closed) return
    const outcome = session.outcome
    if (outcome?.kind === 'relay-loop') {
      this.state = 'stopped'
      this.lastError = `relay loop: Server header ${JSON.stringify(outcome.server)}`
      this.opts.callbacks.onRelayLoop(this, outcome.server)
      return
    }
    if (outcome?.kind === 'future-cursor') {
      this.state = 'stopped'
      this.lastError = `FutureCursor for cursor ${session.cursor}: ${outcome.message}`
      this.opts.callbacks.onFutureCursor(this, outcome.message, session.cursor)
      return
    }
    const failure = session.failure ?? {
      reason: session.opened ? 'closed' : 'dial',
      message: `connection closed by host (code ${code}${reason ? `, ${reason}` : ''})`,
    }
    this.scheduleRetry(failure, session.retryAfterMs)
  }

  private failBeforeSocket(failure: ConnectionFailure): void {
    this.session = undefined
    this.scheduleRetry(failure, undefined)
  }

  private scheduleRetry(failure: ConnectionFailure, retryAfterMs: number | undefined): void {
    this.attempt++
    const delay = Math.max(backoffDelay(this.attempt, this.opts.backoff), retryAfterMs ?? 0)
    this.state = 'backoff'
    this.lastError = failure.message
    this.nextRetryAt = Date.now() + delay
    this.opts.metrics.failures.inc({ reason: failure.reason })
    this.opts.metrics.reconnects.inc()
    this.log.info({ reason: failure.reason, err: failure.message, attempt: this.attempt, retryInMs: delay }, 'host connection ended; retrying')
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined
      this.nextRetryAt = null
      if (!this.closed) this.dial()
    }, delay)
    this.opts.callbacks.onFailure(this, failure)
  }

  private clearRetry(): void {
    clearTimeout(this.retryTimer)
    this.retryTimer = undefined
    this.nextRetryAt = null
  }

  /** Ends a session on our side (protocol error, timeout). Bad framing is a hard error: the whole connection goes. */
  private end(session: Session, failure: ConnectionFailure): void {
    session.failure ??= failure
    session.ws.terminate()
  }

  // ---------------------------------------------------------------- frames

  private onMessage(session: Session, data: Buffer | ArrayBuffer | Buffer[], isBinary: boolean): void {
    if (session !== this.session || session.failure || session.outcome || this.closed) return
    this.lastActivity = Date.now()
    let bytes: Uint8Array
    try {
      bytes = binaryMessageBytes(data, isBinary)
    } catch (err) {
      this.opts.stats.dropped(this.host.hostname, 'text-frame')
      this.end(session, { reason: 'text-frame', message: (err as Error).message })
      return
    }
    this.opts.metrics.bytesIn.inc(bytes.length)
    let frame
    try {
      frame = decodeFrame(bytes)
    } catch (err) {
      const reason = err instanceof FrameError ? err.reason : 'bad-frame'
      this.opts.stats.dropped(this.host.hostname, reason)
      this.end(session, { reason, message: `undecodable frame: ${(err as Error).message}` })
      return
    }
    if (frame.op === -1) {
      // The host chooses this text (up to a whole frame): clip it before it is kept in stats, logs and the host row.
      const text = clip(`${frame.error}${frame.message ? `: ${frame.message}` : ''}`)
      this.opts.stats.setLastError(this.host.hostname, `upstream error frame ${text}`)
      if (frame.error === 'FutureCursor' && session.cursor > 0) {
        session.outcome = { kind: 'future-cursor', message: clip(frame.message ?? '') }
        session.ws.terminate()
      } else {
        this.end(session, { reason: 'error-frame', message: `upstream error frame ${text}` })
      }
      return
    }
    if (frame.t === '#info') {
      // Connection-level (e.g. OutdatedCursor): logged, never forwarded.
      this.log.info({ name: clip(String(frame.body.name)), message: clip(String(frame.body.message ?? '')), cursor: session.cursor }, 'upstream #info')
      return
    }
    const rawSeq = frame.body.seq
    const seq = typeof rawSeq === 'number' && Number.isSafeInteger(rawSeq) && rawSeq > 0 ? rawSeq : null
    if (seq !== null) {
      if (seq <= session.lastSeq) {
        this.opts.stats.dropped(this.host.hostname, 'seq-not-increasing')
        this.log.warn({ seq, lastSeq: session.lastSeq, t: frame.t }, 'upstream seq not increasing; frame dropped')
        return
      }
      session.lastSeq = seq
      if (seq > this.lastSeqSeen) this.lastSeqSeen = seq
    }
    // A connection that delivers events is healthy: the next failure starts the backoff over.
    if (session.delivered++ === 0) this.attempt = 0
    this.queue.push({ frame, seq })
    this.pump()
  }

  /** Pushes queued frames in order, pausing the socket while ingest or the rate limits hold the host back. */
  private pump(): void {
    if (this.pumping || this.awaiting) return
    this.pumping = true
    try {
      while (this.queue.length > 0) {
        const wait = this.limiter.waitMs()
        if (wait > 0) {
          this.hold('rate-limit')
          this.rateLimited.held(this.limiter.blockingWindow() ?? 'perSecond', this.limiter.state())
          this.rateTimer ??= setTimeout(() => {
            this.rateTimer = undefined
            this.rateLimited.waitEnded()
            this.pump()
          }, wait)
          return
        }
        const item = this.queue.shift() as Queued
        this.limiter.record()
        let pending: Promise<void> | undefined
        try {
          pending = this.opts.sink.push(this.host, item.frame, item.seq)
        } catch (err) {
          this.opts.stats.dropped(this.host.hostname, 'ingest-error')
          this.log.error({ err, seq: item.seq }, 'ingest rejected a frame')
          continue
        }
        if (pending) {
          this.hold('backpressure')
          this.awaiting = pending
            .catch((err: unknown) => {
              this.opts.stats.dropped(this.host.hostname, 'ingest-error')
              this.log.error({ err, seq: item.seq }, 'ingest failed a frame')
            })
            .finally(() => {
              this.awaiting = undefined
              if (!this.closed) this.pump()
            })
          return
        }
      }
      this.release()
    } finally {
      this.pumping = false
    }
  }

  private hold(reason: HoldReason): void {
    if (this.held === null) {
      this.opts.metrics.heldBackHosts.inc()
      if (this.session?.opened) this.session.ws.pause()
    }
    this.held = reason
  }

  private release(): void {
    if (this.held === null) return
    this.held = null
    this.opts.metrics.heldBackHosts.dec()
    // Time spent paused is ours, not the host's silence.
    this.lastActivity = Date.now()
    if (this.session?.opened) this.session.ws.resume()
  }
}
