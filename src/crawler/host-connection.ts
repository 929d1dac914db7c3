/**
 * One subscribeRepos connection to one upstream host, kept alive forever:
 * dial (SSRF-checked), read frames, hand message frames to ingest in order,
 * hold the socket back when ingest or the host's rate limits say so, and
 * redial with exponential backoff and full jitter whenever it ends.
 *
 * Opening the socket itself is upstream-dial.ts. Decisions that touch the database or other hosts (status, FutureCursor
 * policy, relay loops) are reported to the crawler through callbacks.
 */
import type { IncomingMessage } from 'node:http'
import type { LookupFunction } from 'node:net'
import type { Logger } from 'pino'
import WebSocket from 'ws'
import { MAX_FRAME_BYTES, type MessageFrame } from '../atproto/frame.js'
import { createGuardedLookup, findNetGuardError, type HostPolicy } from '../net/net-guard.js'
import type { ConnectionCallbacks, ConnectionFailure, ConnectionInfo, ConnectionState, HostConnectionOptions } from './connection-types.js'
import { infoFields, readMessage, type RefusalReason } from './frame-intake.js'
import { FrameQueue, type HoldReason, type QueuedFrame } from './frame-queue.js'
import { hostRateLimits } from './rate-limit.js'
import { RateLimitEpisode, type RateLimitedView } from './rate-limit-episode.js'
import { ReconnectBackoff } from './reconnect-backoff.js'
import type { UpstreamHost } from './types.js'
import { isRelayServerHeader, openUpstreamSocket, retryAfterMs, subscribeReposUrl } from './upstream-dial.js'

export type { ConnectionCallbacks, ConnectionFailure, ConnectionInfo, ConnectionState, HostConnectionOptions, HoldReason }

interface Session {
  ws: WebSocket
  /** The cursor this dial asked for (0 = live). */
  cursor: number
  /** Highest seq on this socket: seqs must strictly increase per connection. */
  lastSeq: number
  opened: boolean
  /** A frame on this connection was refused (bad framing or over a decode limit). */
  refused: boolean
  /** Why it ended, set by whoever ends it first. */
  failure?: ConnectionFailure
  retryAfterMs?: number
  outcome?: { kind: 'future-cursor'; message: string } | { kind: 'relay-loop'; server: string }
}

const CLOSE_GRACE_MS = 1_000

export class HostConnection {
  readonly host: UpstreamHost
  private readonly opts: HostConnectionOptions
  private readonly log: Logger
  private readonly queue: FrameQueue
  private readonly lookup: LookupFunction
  private readonly policy: HostPolicy
  private session: Session | undefined
  private state: ConnectionState = 'stopped'
  private closed = false
  private storedCursor: number
  private startLive: boolean
  private lastSeqSeen = 0
  private readonly backoff: ReconnectBackoff
  private retryTimer: NodeJS.Timeout | undefined
  private nextRetryAt: number | null = null
  private pingTimer: NodeJS.Timeout | undefined
  private lastActivity = 0
  private connectedSince: number | null = null
  private lastError: string | null = null
  private readonly rateLimited: RateLimitEpisode

  constructor(opts: HostConnectionOptions) {
    this.opts = opts
    this.host = opts.host
    this.storedCursor = opts.storedCursor
    this.startLive = opts.startLive ?? false
    this.log = opts.logger.child({ host: opts.host.hostname })
    this.rateLimited = new RateLimitEpisode(this.log, opts.metrics.rateLimitedHosts, opts.rateLimitQuietMs)
    this.queue = new FrameQueue({
      limits: hostRateLimits(opts.host.accountLimit, opts.host.trusted),
      deliver: (item) => this.deliver(item),
      onHold: (held) => this.onHold(held),
      onRateLimited: (window, state) => this.rateLimited.held(window, state),
      onRateWaitEnded: () => this.rateLimited.waitEnded(),
    })
    this.backoff = new ReconnectBackoff(opts.backoff)
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
    this.backoff.reset()
    this.start()
  }

  /** The host reset its sequence: forget every seq seen and start live. Queued frames of the old sequence are dropped. */
  resetCursor(): void {
    this.lastSeqSeen = 0
    this.storedCursor = 0
    this.startLive = true
    this.queue.clear()
  }

  /** Account limit or trust changed: rate limits follow at once. */
  refreshLimits(): void {
    this.queue.setLimits(hostRateLimits(this.host.accountLimit, this.host.trusted))
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
      attempt: this.backoff.attempt,
      nextRetryAt: this.nextRetryAt === null ? null : new Date(this.nextRetryAt).toISOString(),
      lastError: this.lastError,
      heldBack: this.queue.held,
      rateLimited: this.rateLimited.view(),
      queued: this.queue.length,
      rateLimits: this.queue.rateLimits(),
    }
  }

  /** When the open connection opened (ms), null unless open: the cheap read per-scrape metrics make for every host. */
  get openSince(): number | null {
    return this.state === 'open' ? this.connectedSince : null
  }

  rateLimitedView(): RateLimitedView | null {
    return this.rateLimited.view()
  }

  /** Close cleanly and wait for the push ingest is still holding. Frames not yet pushed are dropped (the cursor never passed them). */
  async stop(): Promise<void> {
    if (this.closed) return
    this.closed = true
    this.clearRetry()
    this.rateLimited.stop()
    this.queue.clear()
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
    await this.queue.stop()
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
    const url = subscribeReposUrl(this.host, cursor, cursor === 0 && this.startLive)
    let ws: WebSocket
    try {
      ws = openUpstreamSocket(this.host, url, { policy: this.policy, lookup: this.lookup, handshakeTimeoutMs: this.opts.handshakeTimeoutMs })
    } catch (err) {
      // The SSRF check refuses the name; anything else the socket's constructor throws is a failed dial.
      const guard = findNetGuardError(err)
      this.failBeforeSocket(
        guard ? { reason: 'forbidden-host', message: `refusing to connect: ${guard.message}` } : { reason: 'dial', message: `connection failed: ${(err as Error).message}` },
      )
      return
    }
    const session: Session = { ws, cursor, lastSeq: 0, opened: false, refused: false }
    this.session = session
    this.log.debug({ cursor, attempt: this.backoff.attempt }, 'dialing host')

    ws.on('upgrade', (res: IncomingMessage) => {
      if (isRelayServerHeader(res.headers.server)) {
        session.outcome = { kind: 'relay-loop', server: String(res.headers.server) }
        ws.terminate()
      }
    })
    ws.on('unexpected-response', (_req, res: IncomingMessage) => {
      const retryAfter = retryAfterMs(res)
      if (retryAfter !== undefined) session.retryAfterMs = retryAfter
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
    if (this.queue.held) session.ws.pause()
    this.pingTimer = setInterval(() => this.keepalive(session), this.opts.pingIntervalMs)
    this.log.info({ cursor: session.cursor }, 'connected to host')
    this.opts.callbacks.onOpen(this)
  }

  private keepalive(session: Session): void {
    if (session !== this.session || !session.opened) return
    // While we hold the socket back we read nothing, pongs included: not the host's fault.
    if (this.queue.held === null && Date.now() - this.lastActivity > this.opts.pingIntervalMs * 3) {
      this.end(session, { reason: 'timeout', message: `no traffic or pong for ${Math.round((Date.now() - this.lastActivity) / 1000)} s` })
      return
    }
    session.ws.ping()
  }

  private onError(session: Session, err: Error & { code?: string }): void {
    if (err.code === 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH') {
      this.refuse(session, 'too-big', `refused frame (too-big): frame larger than ${MAX_FRAME_BYTES} bytes`)
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
    this.scheduleRetry(failure, session.retryAfterMs, session.refused)
  }

  private failBeforeSocket(failure: ConnectionFailure): void {
    this.session = undefined
    this.scheduleRetry(failure, undefined)
  }

  private scheduleRetry(failure: ConnectionFailure, retryAfterMs: number | undefined, refused = false): void {
    const delay = this.backoff.failed(refused, retryAfterMs)
    this.state = 'backoff'
    this.lastError = failure.message
    this.nextRetryAt = Date.now() + delay
    this.opts.metrics.failures.inc({ reason: failure.reason })
    this.opts.metrics.reconnects.inc()
    this.log.info({ reason: failure.reason, err: failure.message, attempt: this.backoff.attempt, retryInMs: delay }, 'host connection ended; retrying')
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

  /** A frame we do not accept: counted under its reason, and the connection ends (the backoff keeps growing: reconnect-backoff.ts). */
  private refuse(session: Session, reason: RefusalReason, message: string): void {
    this.opts.stats.dropped(this.host.hostname, reason)
    this.log.warn({ reason, err: message, cursor: session.cursor }, 'refused upstream frame; closing the connection')
    session.refused = true
    this.end(session, { reason, message })
  }

  private onMessage(session: Session, data: Buffer | ArrayBuffer | Buffer[], isBinary: boolean): void {
    if (session !== this.session || session.failure || session.outcome || this.closed) return
    this.lastActivity = Date.now()
    const { intake, size } = readMessage(data, isBinary)
    this.opts.metrics.bytesIn.inc(size)
    if (intake.kind === 'refused') {
      this.refuse(session, intake.reason, intake.message)
      return
    }
    if (intake.kind === 'error-frame') {
      this.opts.stats.setLastError(this.host.hostname, `upstream error frame ${intake.text}`)
      if (intake.error === 'FutureCursor' && session.cursor > 0) {
        session.outcome = { kind: 'future-cursor', message: intake.message }
        session.ws.terminate()
      } else {
        this.end(session, { reason: 'error-frame', message: `upstream error frame ${intake.text}` })
      }
      return
    }
    if (intake.kind === 'dropped') {
      this.opts.stats.dropped(this.host.hostname, intake.reason)
      this.opts.stats.setLastError(this.host.hostname, `${intake.reason}: ${intake.message}`)
      this.log.debug({ reason: intake.reason }, `upstream frame dropped: ${intake.message}`) // per frame: the count and last error show it
      return
    }
    const { frame, seq } = intake
    if (seq !== null) {
      if (seq <= session.lastSeq) {
        this.opts.stats.dropped(this.host.hostname, 'seq-not-increasing')
        this.log.warn({ seq, lastSeq: session.lastSeq, t: frame.t }, 'upstream seq not increasing; frame dropped')
        return
      }
      session.lastSeq = seq
      if (seq > this.lastSeqSeen) this.lastSeqSeen = seq
    }
    if (frame.t !== '#info') this.backoff.delivered(this.connectedSince ?? Date.now())
    // The ticket is opened here, on arrival: the cursor cannot pass this seq until ingest resolves it.
    const ticket = seq !== null ? this.opts.cursors.openTicket(this.host.id, seq) : null
    // #info goes through the queue too, so it counts against the host's rate limits.
    this.queue.push({ frame, ticket })
  }

  /**
   * One queued frame to ingest (or, for #info, to the log); failures are counted, never thrown.
   * If ingest throws before resolving the event's ticket, it is dropped here as `ingest-error`.
   */
  private deliver(item: QueuedFrame): Promise<void> | undefined {
    if (item.frame.t === '#info') {
      this.onInfo(item.frame)
      return undefined
    }
    const { ticket } = item
    const failed = (err: unknown, what: string): void => {
      this.log.error({ err, seq: ticket?.seq }, what)
      if (ticket !== null && !ticket.open) return
      ticket?.drop('ingest-error')
      this.opts.stats.dropped(this.host.hostname, 'ingest-error')
    }
    try {
      return this.opts.sink.push(this.host, item.frame, ticket)?.catch((err: unknown) => failed(err, 'ingest failed a frame'))
    } catch (err) {
      failed(err, 'ingest rejected a frame')
      return undefined
    }
  }

  /** Connection-level (e.g. OutdatedCursor): logged and counted, never forwarded. */
  private onInfo(frame: MessageFrame): void {
    this.opts.stats.dropped(this.host.hostname, 'info')
    this.log.info({ ...infoFields(frame), cursor: this.session?.cursor }, 'upstream #info')
  }

  private onHold(held: boolean): void {
    if (held) {
      this.opts.metrics.heldBackHosts.inc()
      if (this.session?.opened) this.session.ws.pause()
      return
    }
    this.opts.metrics.heldBackHosts.dec()
    // Time spent paused is ours, not the host's silence.
    this.lastActivity = Date.now()
    if (this.session?.opened) this.session.ws.resume()
  }
}
