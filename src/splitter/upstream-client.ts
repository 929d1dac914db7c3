/**
 * The splitter's one upstream subscription: `subscribeRepos` on the upstream
 * relay from the stored cursor, every event handed to the splitter log
 * unchanged. Redials forever with the relay's jittered backoff (backoff.ts);
 * with a fallback configured, switches to the other relay once the current
 * one has been unreachable for `failoverAfterMs`.
 *
 * Seq spaces (docs/architecture.md §8): the log is always in the seq space of
 * the upstream it follows. A cursor is only sent to that upstream. Switching
 * to the other relay connects live and, at its first event, rewinds the whole
 * log (another relay's seqs mean other events). An upstream `FutureCursor`
 * (its seqs went backwards: reset, or restored from an older backup) is
 * handled like a host that reset (RELAY_FUTURE_CURSOR): recorded, then either
 * reconnected live with the log rewound to the first new seq if that is not
 * above what is stored (`reset`), or the subscription stopped (`stop`).
 *
 * A seq more than `maxSeqJump` (one partition) above the accepted one is refused and the
 * connection ended: one bogus seq would otherwise make every real event after it a
 * "duplicate". The first event after a cursor is held to it too, unless the upstream said
 * OutdatedCursor (it could not fill the gap); a live connection's first event sets the base.
 */
import { setTimeout as sleep } from 'node:timers/promises'
import type { Logger } from 'pino'
import { Counter, type Registry } from 'prom-client'
import WebSocket from 'ws'
import { MAX_FRAME_BYTES } from '../atproto/frame.js'
import { backoffDelay, DEFAULT_BACKOFF, type BackoffOptions } from '../backoff.js'
import type { FutureCursorPolicy } from '../config.js'
import { clipUpstreamText as clip } from '../upstream-text.js'
import type { SplitterLog } from './splitter-log.js'
import { readUpstreamFrame } from './upstream-frame.js'

export type UpstreamRole = 'primary' | 'fallback'
export type UpstreamState = 'connecting' | 'open' | 'waiting' | 'stopped'

export interface UpstreamStatus {
  url: string
  role: UpstreamRole
  state: UpstreamState
  connectedSince: string | null
  /** Newest upstream seq accepted (0: none yet). */
  seq: number
  /** When the newest event arrived. */
  lastEventAt: string | null
  /** Arrival time minus the `time` of the newest event: how far behind the upstream's head the stream runs. */
  lagSeconds: number | null
  lastError: string | null
}

export interface UpstreamClientOptions {
  /** The upstream relay, then optionally the fallback. */
  upstreams: readonly string[]
  log: SplitterLog
  futureCursorPolicy: FutureCursorPolicy
  failoverAfterMs: number
  backoff?: BackoffOptions
  userAgent: string
  /** WebSocket handshake bound. */
  handshakeTimeoutMs?: number
  /** Largest seq step accepted above the accepted seq (default: the log's partition size). */
  maxSeqJump?: number
  logger: Logger
  registry: Registry
}

interface SessionOutcome {
  opened: boolean
  events: number
  futureCursor: boolean
}

const SUBSCRIBE_PATH = '/xrpc/com.atproto.sync.subscribeRepos'

/** `wss://…/xrpc/com.atproto.sync.subscribeRepos` for a relay given as https://, wss://, http:// or ws://. */
export function subscribeUrl(base: string): string {
  const u = new URL(base)
  u.protocol = u.protocol === 'https:' || u.protocol === 'wss:' ? 'wss:' : 'ws:'
  u.pathname = u.pathname.replace(/\/+$/, '') + SUBSCRIBE_PATH
  u.search = ''
  return u.toString()
}

/** The same relay however it is written (https:// or wss://, a trailing slash): its seq space is the same. */
export function sameRelay(a: string, b: string): boolean {
  return subscribeUrl(a) === subscribeUrl(b)
}

export class UpstreamClient {
  private readonly opts: UpstreamClientOptions
  private readonly backoff: BackoffOptions
  private readonly logger: Logger
  private index: number
  private state: UpstreamState = 'waiting'
  private connectedSince: number | null = null
  private lastEventAt: number | null = null
  private lagSeconds: number | null = null
  private lastError: string | null = null
  /** The upstream answered FutureCursor: the next session goes live and may rewind the log. */
  private resetPending = false
  private ws: WebSocket | undefined
  private running: Promise<void> | undefined
  private stopped = false
  private readonly wake = new AbortController()

  private readonly mDials: Counter<'upstream' | 'result'>
  private readonly mFutureCursor: Counter<'action'>
  private readonly mSwitches: Counter<'to'>
  private readonly mRefused: Counter
  private readonly mInfo: Counter

  constructor(opts: UpstreamClientOptions) {
    if (opts.upstreams.length < 1 || opts.upstreams.length > 2) throw new RangeError('one upstream and at most one fallback')
    this.opts = opts
    this.backoff = opts.backoff ?? DEFAULT_BACKOFF
    this.logger = opts.logger
    // Resume on the relay the stored log follows (sticky across restarts), else the primary.
    const stored = opts.log.upstream
    this.index = Math.max(0, stored === undefined ? 0 : opts.upstreams.findIndex((u) => sameRelay(u, stored)))
    const registers = [opts.registry]
    this.mDials = new Counter({ name: 'relay_splitter_upstream_dials_total', help: 'Connection attempts to the upstream, by upstream and result (opened, failed)', labelNames: ['upstream', 'result'], registers })
    this.mFutureCursor = new Counter({ name: 'relay_splitter_upstream_future_cursor_total', help: 'Upstream FutureCursor answers (its seq went backwards), by action taken (reset, stop)', labelNames: ['action'], registers })
    this.mSwitches = new Counter({ name: 'relay_splitter_upstream_switches_total', help: 'Switches between the upstream and the fallback, by the role switched to', labelNames: ['to'], registers })
    this.mRefused = new Counter({ name: 'relay_splitter_upstream_refused_frames_total', help: 'Upstream messages that were not valid frames (the connection is ended)', registers })
    this.mInfo = new Counter({ name: 'relay_splitter_upstream_info_total', help: 'Upstream #info and unsequenced messages (logged, never stored or forwarded)', registers })
  }

  start(): void {
    this.running ??= this.run()
  }

  async stop(): Promise<void> {
    this.stopped = true
    this.wake.abort()
    this.ws?.terminate()
    await this.running
    this.state = 'stopped'
  }

  status(): UpstreamStatus {
    return {
      url: this.opts.upstreams[this.index] as string,
      role: this.index === 0 ? 'primary' : 'fallback',
      state: this.state,
      connectedSince: this.connectedSince === null ? null : new Date(this.connectedSince).toISOString(),
      seq: this.opts.log.acceptedSeq(),
      lastEventAt: this.lastEventAt === null ? null : new Date(this.lastEventAt).toISOString(),
      lagSeconds: this.lagSeconds,
      lastError: this.lastError,
    }
  }

  private async run(): Promise<void> {
    let attempt = 0
    let downSince: number | undefined
    while (!this.stopped) {
      const url = this.opts.upstreams[this.index] as string
      const outcome = await this.session(url)
      this.connectedSince = null
      if (this.stopped) break
      this.state = 'waiting'
      if (outcome.futureCursor) {
        this.mFutureCursor.inc({ action: this.opts.futureCursorPolicy })
        if (this.opts.futureCursorPolicy === 'stop') {
          this.state = 'stopped'
          this.logger.error({ upstream: url, seq: this.opts.log.acceptedSeq() }, 'upstream answered FutureCursor (its seq went backwards); subscription stopped (RELAY_FUTURE_CURSOR=stop): restart the splitter to resume')
          return
        }
        this.logger.warn({ upstream: url, seq: this.opts.log.acceptedSeq() }, 'upstream answered FutureCursor (its seq went backwards); reconnecting live, the log follows its new seqs')
        this.resetPending = true
        attempt = 0
        continue
      }
      const now = Date.now()
      // A socket that opens and then fails without an event is as down as one that never opens.
      if (outcome.events > 0) downSince = now
      else downSince ??= now
      attempt = outcome.events > 0 ? 1 : attempt + 1
      if (this.opts.upstreams.length > 1 && now - downSince >= this.opts.failoverAfterMs) {
        this.index = 1 - this.index
        const role: UpstreamRole = this.index === 0 ? 'primary' : 'fallback'
        this.mSwitches.inc({ to: role })
        this.logger.warn({ from: url, to: this.opts.upstreams[this.index], downMs: now - downSince }, `upstream unreachable; switching to the ${role} (the log follows its seqs from its first event)`)
        // The other relay's seqs are another space: its first event rewinds the whole log, not a reset.
        this.resetPending = false
        downSince = now
        attempt = 0
        continue
      }
      try {
        await sleep(backoffDelay(attempt, this.backoff), undefined, { signal: this.wake.signal })
      } catch {
        // woken by stop()
      }
    }
  }

  private session(url: string): Promise<SessionOutcome> {
    const log = this.opts.log
    const sameSpace = log.upstream !== undefined && sameRelay(log.upstream, url)
    const cursor = sameSpace && !this.resetPending ? log.resumeCursor() : undefined
    const target = subscribeUrl(url) + (cursor !== undefined ? `?cursor=${cursor}` : '')
    const outcome: SessionOutcome = { opened: false, events: 0, futureCursor: false }
    this.state = 'connecting'
    return new Promise((resolve) => {
      const ws = new WebSocket(target, {
        perMessageDeflate: false,
        maxPayload: MAX_FRAME_BYTES,
        handshakeTimeout: this.opts.handshakeTimeoutMs ?? 10_000,
        headers: { 'user-agent': this.opts.userAgent },
      })
      this.ws = ws
      let first = true
      let paused = false
      // Whether the next event's seq is held to maxSeqJump above the accepted one (see the file comment).
      let bounded = cursor !== undefined
      const fail = (message: string) => {
        this.lastError = clip(message)
        ws.terminate()
      }
      ws.on('open', () => {
        outcome.opened = true
        this.state = 'open'
        this.connectedSince = Date.now()
        this.mDials.inc({ upstream: url, result: 'opened' })
        this.logger.info({ upstream: url, cursor: cursor ?? null }, 'connected to the upstream relay')
      })
      ws.on('message', (data: Buffer, isBinary: boolean) => {
        if (this.stopped) return
        const frame = readUpstreamFrame(data, isBinary)
        switch (frame.kind) {
          case 'refused':
            this.mRefused.inc()
            this.logger.warn({ upstream: url, reason: frame.message }, 'upstream sent something that is not a frame; reconnecting')
            return fail(`refused frame: ${frame.message}`)
          case 'error':
            if (frame.error === 'FutureCursor' && cursor !== undefined) {
              outcome.futureCursor = true
              return fail(`FutureCursor for cursor ${cursor}: ${frame.message}`)
            }
            this.logger.warn({ upstream: url, error: frame.error, message: frame.message }, 'upstream sent an error frame; reconnecting')
            return fail(`${frame.error}: ${frame.message}`)
          case 'info':
            this.mInfo.inc()
            if (frame.name === 'OutdatedCursor' && first) bounded = false
            // OutdatedCursor: the upstream no longer has every event after our cursor (a gap it could not fill).
            this.logger.warn({ upstream: url, t: frame.t, name: frame.name, message: frame.message, cursor: cursor ?? null }, 'upstream #info')
            return
          case 'event':
            break
        }
        const maxJump = this.opts.maxSeqJump ?? log.eventLog.partitionSize
        if (bounded && frame.seq - log.acceptedSeq() > maxJump) {
          this.mRefused.inc()
          this.logger.warn({ upstream: url, seq: frame.seq, acceptedSeq: log.acceptedSeq(), maxSeqJump: maxJump }, 'upstream seq jumped too far ahead; reconnecting from the stored cursor')
          return fail(`refused frame: seq ${frame.seq} jumps more than ${maxJump} above ${log.acceptedSeq()}`)
        }
        bounded = true
        if (first) {
          first = false
          if (!sameSpace) log.rewind(0, url, 'upstream-switch')
          else if (this.resetPending && frame.seq <= log.acceptedSeq()) log.rewind(frame.seq, url, 'upstream-reset')
          this.resetPending = false
        }
        if (!log.append({ seq: frame.seq, t: frame.t, code: frame.code, did: frame.did, frame: frame.bytes })) return
        const now = Date.now()
        this.lastEventAt = now
        const time = frame.time === undefined ? NaN : Date.parse(frame.time)
        if (!Number.isNaN(time)) this.lagSeconds = Math.max(0, (now - time) / 1000)
        if (outcome.events++ === 0) this.logger.info({ mode: 'splitter', upstream: url, seq: frame.seq, lagSeconds: this.lagSeconds }, 'first upstream event on this connection')
        if (!paused && !log.hasRoom()) {
          // The log's writes are behind: stop reading, so the upstream's own buffer holds the rest.
          paused = true
          ws.pause()
          void log.waitForRoom().then(() => {
            paused = false
            if (ws.readyState === WebSocket.OPEN) ws.resume()
          })
        }
      })
      // A failed dial (ws says "Unexpected server response: 503" for an HTTP answer), or a dropped socket (a close follows either way, which ends the session).
      ws.on('error', (err) => {
        this.lastError = clip(err.message)
      })
      ws.on('close', (code, reason) => {
        if (!outcome.opened) this.mDials.inc({ upstream: url, result: 'failed' })
        else if (!this.stopped) this.logger.warn({ upstream: url, code, reason: clip(reason.toString()), events: outcome.events }, 'upstream connection closed')
        if (this.ws === ws) this.ws = undefined
        resolve(outcome)
      })
    })
  }
}
