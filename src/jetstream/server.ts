/**
 * Jetstream v1 (`GET /subscribe`, JETSTREAM.md) served from the relay's own
 * committed events: no second service, no second copy of the stream.
 *
 * Pull model: a subscriber is only a position (the last seq it has passed).
 * Its pump reads what comes after it, from the in-memory ring of recent
 * events or, when it is behind the ring, a page at a time from the event log,
 * and writes while its socket stays under the high-water mark; when it
 * reaches the head it waits for the next commit. Nothing is queued per
 * subscriber, so a slow reader costs no memory beyond one page; it is closed
 * (`too-slow`) only if, after having been live, it is more than `maxLag` events
 * behind and has read slower than `minRate` for `slowWindowMs` (the firehose's
 * policy, firehose/slow-reader.ts). Idle subscribers are pinged (heartbeat.ts, `unresponsive`), and a
 * requireHello one must say hello in time (`no-hello`).
 *
 * Each event's messages (JSON) and their text and zstd frames are built once,
 * on first use, and the same Buffers are written to every subscriber's TCP
 * socket (jet-event.ts). permessage-deflate subscribers go through `ws`,
 * which compresses per connection.
 */
import type { IncomingMessage } from 'node:http'
import type { Socket } from 'node:net'
import type { Duplex } from 'node:stream'
import type { Logger } from 'pino'
import type { Registry } from 'prom-client'
import WebSocket, { WebSocketServer } from 'ws'
import { XrpcError } from '../atproto/xrpc-error.js'
import { configDefault } from '../config.js'
import { CONSUMER_PING_INTERVAL_MS } from '../firehose/firehose.js'
import { SlowReaderPolicy } from '../firehose/slow-reader.js'
import { answerRaw } from '../http/raw-response.js'
import { socketDrained } from '../http/socket-drain.js'
import { closeReason } from '../http/ws-close.js'
import { Semaphore } from '../semaphore.js'
import type { CommittedEvent, CommittedEventSource } from '../sequencer/types.js'
import type { JetstreamCutOffReason } from './cut-off-reasons.js'
import { JetFilter } from './filter.js'
import { HELLO_TIMEOUT_MS, pingIdle } from './heartbeat.js'
import { JetEvent, type JetBuildContext, type JetWire } from './jet-event.js'
import type { JetLogSource } from './log-reader.js'
import { JetstreamMetrics, type WireEncoding } from './metrics.js'
import { Subscriber, type State } from './subscriber.js'
import { parseUpgrade, type UpgradeRequest } from './v1-params.js'
import type { JetstreamOptions } from './options.js'
import { onClientMessage } from './client-messages.js'
import { JetRing } from './ring.js'
import { isTakedown, writeEvents, type WriteContext } from './send.js'
import { cursorTooOld, parseV2Upgrade, SUBSCRIBE_EVENTS_NSID, unknownDictionary, V2_SUBPROTOCOL } from './v2-params.js'
import { LEGACY_DICTIONARY_FILE, V2_DICTIONARY_FILE, ZstdCodec } from './zstd.js'

export const JETSTREAM_V1_PATH = '/subscribe'
export const JETSTREAM_V2_PATH = `/xrpc/${SUBSCRIBE_EVENTS_NSID}`

export type { JetstreamOptions } from './options.js'


export class JetstreamServer {
  private readonly source: CommittedEventSource
  private readonly log: JetLogSource
  private ring: JetRing
  private readonly ringSize: number
  private readonly ringMaxBytes: number
  private readonly slowReaders: SlowReaderPolicy
  private readonly slowTimer: NodeJS.Timeout
  private readonly pageSize: number
  private readonly closeGraceMs: number
  private readonly pingIntervalMs: number
  private readonly helloTimeoutMs: number
  private readonly pingTimer: NodeJS.Timeout
  private readonly logReads: Semaphore
  private readonly logger: Logger
  private readonly plain: WebSocketServer
  private readonly deflate: WebSocketServer
  private readonly v2: WebSocketServer
  private readonly subscribers = new Map<number, Subscriber>()
  private readonly metrics: JetstreamMetrics
  private readonly build: JetBuildContext
  private readonly writeContext: WriteContext
  private readonly codecs = new Map<JetWire, ZstdCodec>()
  private readonly unsubscribe: (() => void) | undefined
  private nextId = 0
  private closed = false

  constructor(opts: JetstreamOptions) {
    this.source = opts.source
    this.log = opts.log
    this.pageSize = opts.pageSize ?? 500
    this.closeGraceMs = opts.closeGraceMs ?? 2_000
    this.pingIntervalMs = opts.pingIntervalMs ?? CONSUMER_PING_INTERVAL_MS
    this.helloTimeoutMs = opts.helloTimeoutMs ?? HELLO_TIMEOUT_MS
    this.logReads = new Semaphore(opts.maxConcurrentLogReads ?? 2)
    this.logger = opts.logger
    this.slowReaders = new SlowReaderPolicy({
      maxLag: opts.maxLag,
      minRate: opts.minRate ?? configDefault('consumerMinRate'),
      windowMs: opts.slowWindowMs ?? configDefault('consumerSlowWindowMs'),
    })
    this.ringSize = opts.ringSize
    this.ringMaxBytes = opts.ringMaxBytes ?? 64 * 1024 * 1024
    this.ring = new JetRing(this.ringSize, this.ringMaxBytes, this.source.currentSeq())
    // Clients send at most an options_update (10,000 DIDs fit in well under 1 MiB).
    const common = { noServer: true, clientTracking: false, maxPayload: 1024 * 1024 } as const
    this.plain = new WebSocketServer({ ...common, perMessageDeflate: false })
    this.deflate = new WebSocketServer({ ...common, perMessageDeflate: { threshold: 0 } })
    this.v2 = new WebSocketServer({
      ...common,
      perMessageDeflate: false,
      handleProtocols: (protocols) => (protocols.has(V2_SUBPROTOCOL) ? V2_SUBPROTOCOL : false),
    })
    this.metrics = new JetstreamMetrics(opts.registry, () => this.subscribers.values())
    this.build = {
      zstd: (wire) => this.codec(wire),
      onSkipped: (seq, ops) => {
        this.metrics.skippedOps.inc(ops)
        this.logger.warn({ seq, ops }, 'jetstream: commit ops left out (record block missing or undecodable)')
      },
      onUndecodable: (seq, err) => {
        this.metrics.undecodable.inc()
        this.logger.error({ err, seq }, 'jetstream: event could not be decoded; not sent')
      },
      onCompressed: (plain, compressed) => {
        this.metrics.plainBytes.inc(plain)
        this.metrics.compressedBytes.inc(compressed)
      },
    }
    this.writeContext = { highWater: opts.highWaterBytes ?? 1 << 20, build: this.build, metrics: this.metrics }
    const unsub: unknown = this.source.onCommitted((events) => this.committed(events))
    this.unsubscribe = typeof unsub === 'function' ? (unsub as () => void) : undefined
    this.pingTimer = setInterval(() => pingIdle(this.subscribers.values(), this.pingIntervalMs, Date.now(), (s) => this.dropUnresponsive(s)), this.pingIntervalMs)
    this.pingTimer.unref()
    this.slowTimer = setInterval(() => this.cutOffSlow(), this.slowReaders.checkIntervalMs)
    this.slowTimer.unref()
  }

  /** Every connected subscriber, for operators and tests. */
  subscriberInfo(): { id: number; remoteAddress: string; wire: JetWire; encoding: WireEncoding; state: State; lag: number; bufferedBytes: number; messagesSent: number }[] {
    const head = this.source.currentSeq()
    return [...this.subscribers.values()].map((s) => ({
      id: s.id,
      remoteAddress: s.remoteAddress,
      wire: s.wire,
      encoding: s.encoding,
      state: s.state,
      lag: Math.max(0, head - s.lastSeq),
      bufferedBytes: s.ws.bufferedAmount,
      messagesSent: s.messagesSent,
    }))
  }

  /** The zstd codec of a wire (its dictionary loaded once). */
  codec(wire: JetWire): ZstdCodec {
    let codec = this.codecs.get(wire)
    if (codec === undefined) {
      codec = ZstdCodec.fromAsset(wire === 'v1' ? LEGACY_DICTIONARY_FILE : V2_DICTIONARY_FILE)
      this.codecs.set(wire, codec)
    }
    return codec
  }

  /** Upgrade requests to /subscribe: every parameter is checked (400) before the upgrade. */
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    if (this.closed) return answerRaw(socket, 503, 'ServiceUnavailable', 'the relay is shutting down')
    let request: UpgradeRequest
    try {
      request = parseUpgrade(req)
    } catch (err) {
      if (!(err instanceof XrpcError)) throw err
      return answerRaw(socket, err.status, err.error, err.message)
    }
    const wss = request.encoding === 'deflate' ? this.deflate : this.plain
    wss.handleUpgrade(req, socket, head, (ws) => void this.accept(ws, req, request))
  }

  /**
   * Upgrade requests to subscribeEvents (v2): parameters, the dictionary and a seq cursor's
   * retention (CursorTooOld) are all checked before the upgrade.
   */
  handleUpgradeV2(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    if (this.closed) return answerRaw(socket, 503, 'ServiceUnavailable', 'the relay is shutting down')
    void (async () => {
      let request: UpgradeRequest
      try {
        const url = new URL(req.url ?? '/', 'http://relay.invalid')
        const v2 = parseV2Upgrade(url, { protocol: req.headers['sec-websocket-protocol'] })
        if (v2.zstdDictionary !== null && v2.zstdDictionary !== this.codec('v2').id) throw unknownDictionary(v2.zstdDictionary, this.codec('v2').id)
        if (v2.cursor?.type === 'seq') {
          const cursor = v2.cursor.seq
          const oldest = await this.logReads.run(() => this.log.oldestSeq())
          if (oldest !== undefined && cursor < oldest) throw cursorTooOld(cursor, oldest)
        }
        request = { wire: 'v2', filter: new JetFilter(v2.filter), cursor: v2.cursor, encoding: v2.zstdDictionary !== null ? 'zstd' : 'text', requireHello: false }
      } catch (err) {
        if (err instanceof XrpcError) return answerRaw(socket, err.status, err.error, err.message)
        this.logger.error({ err }, 'jetstream v2 upgrade failed')
        return answerRaw(socket, 500, 'InternalServerError', 'internal error; see the relay log')
      }
      if (socket.destroyed) return
      this.v2.handleUpgrade(req, socket, head, (ws) => void this.accept(ws, req, request))
    })()
  }

  /**
   * The seqs of the source went backwards (a splitter's upstream reset or was switched):
   * closes every subscriber (1012, `stream-reset`; they reconnect, with a time cursor if
   * they keep one) and empties the ring, whose events are no longer in the log.
   */
  resetStream(): void {
    this.ring = new JetRing(this.ringSize, this.ringMaxBytes, this.source.currentSeq())
    for (const s of this.subscribers.values()) this.cutOff(s, 'stream-reset', 1012, 'stream reset upstream; reconnect')
  }

  /** Closes every subscriber (1001). */
  async close(): Promise<void> {
    if (this.closed) return
    this.closed = true
    this.unsubscribe?.()
    clearInterval(this.pingTimer)
    clearInterval(this.slowTimer)
    const closing = [...this.subscribers.values()].map(
      (s) =>
        new Promise<void>((resolve) => {
          if (s.ws.readyState === WebSocket.CLOSED) return resolve()
          s.ws.once('close', () => resolve())
          this.cutOff(s, 'shutdown', 1001, 'relay shutting down')
        }),
    )
    await Promise.race([Promise.all(closing), new Promise<void>((resolve) => setTimeout(resolve, this.closeGraceMs).unref())])
    for (const s of this.subscribers.values()) s.ws.terminate()
    this.subscribers.clear()
    await Promise.all([this.plain, this.deflate, this.v2].map((w) => new Promise<void>((resolve) => w.close(() => resolve()))))
  }

  private async accept(ws: WebSocket, req: IncomingMessage, r: UpgradeRequest): Promise<void> {
    const socket = (ws as unknown as { _socket: Socket })._socket
    const remoteAddress = req.socket.remoteAddress ?? ''
    ws.on('error', (err) => this.logger.debug({ err, remoteAddress }, 'jetstream subscriber socket error'))
    if (this.closed) return void ws.close(1001, 'relay shutting down')
    const head = this.source.currentSeq()
    const s = new Subscriber(++this.nextId, ws, socket, r.wire, r.encoding, r.filter, remoteAddress, head)
    let helloTimer: NodeJS.Timeout | undefined
    if (r.requireHello) {
      s.state = 'hello'
      const seconds = Math.round(this.helloTimeoutMs / 1000)
      helloTimer = setTimeout(() => {
        if (s.state === 'hello') this.cutOff(s, 'no-hello', 1008, `no options_update within ${seconds} s`)
      }, this.helloTimeoutMs)
      helloTimer.unref()
    }
    this.subscribers.set(s.id, s)
    this.metrics.connections.inc()
    ws.on('pong', () => (s.pingSentAt = undefined))
    ws.on('close', () => {
      clearTimeout(helloTimer)
      s.state = 'closed'
      this.subscribers.delete(s.id)
      s.signal()
    })
    ws.on('message', (data: Buffer, isBinary: boolean) =>
      onClientMessage(s, data, isBinary, { cutOff: (reason, text) => this.cutOff(s, reason, 1008, text), metrics: this.metrics, logger: this.logger }),
    )
    this.logger.info({ subscriber: s.id, remoteAddress, wire: r.wire, cursor: r.cursor, encoding: r.encoding, seq: head }, 'jetstream subscriber connected')
    const cursor = r.cursor
    if (cursor?.type === 'seq') {
      // Inclusive (v2): replay from this seq; one above the head waits for it.
      s.lastSeq = cursor.seq - 1
    } else if (cursor?.type === 'time') {
      try {
        const at = await this.logReads.run(() => this.log.afterSeqForTime(cursor.timeUs))
        // A cursor newer than every event is a live tail.
        if (at !== undefined) s.lastSeq = Math.min(at.afterSeq, head)
        if (at?.clamped && s.wire === 'v2') {
          const info = `{"$type":"message","payload":{"$type":"network.bsky.jetstream.subscribeEvents#info","name":"OutdatedCursor","message":"cursor is older than the retained events; resuming from seq ${at.afterSeq + 1}"}}`
          this.sendControl(s, info)
        }
      } catch (err) {
        return this.fail(s, err)
      }
    }
    await this.pump(s)
  }

  private committed(events: CommittedEvent[]): void {
    if (events.length === 0) return
    for (const e of events) {
      const jet = JetEvent.of(e)
      // Frame now; its messages (about the same size) and wire frames once built.
      this.ring.push(jet, e.frame.length * 3)
      if (e.t === '#account' && isTakedown(e.frame)) {
        // The relay removed the account's events from the log before emitting this: drop them from memory too.
        const removed = this.ring.forgetDid(e.did, e.seq)
        if (removed > 0) this.logger.info({ did: e.did, seq: e.seq, removed }, 'jetstream: taken-down account events dropped from memory')
      }
    }
    for (const s of this.subscribers.values()) s.signal()
  }

  /** Closes once-live subscribers beyond the lag that have read below the floor rate for the window. */
  /** Slow-reader sweeps so far (SlowReaderPolicy.sweeps). */
  get slowReaderSweeps(): number {
    return this.slowReaders.sweeps
  }

  private cutOffSlow(): void {
    this.slowReaders.sweep(this.subscribers.values(), (s) => s.lastSeq, this.source.currentSeq(), Date.now(), (s, verdict) => {
      this.logger.warn({ subscriber: s.id, remoteAddress: s.remoteAddress, lag: verdict.lag, rate: Math.round(verdict.rate), seconds: verdict.seconds, seq: s.lastSeq }, 'jetstream subscriber too slow; closing')
      this.cutOff(s, 'too-slow', 1008, 'ConsumerTooSlow')
    })
  }

  /** The subscriber's one loop: write what follows its position, wait when it is at the head or its socket is full. */
  private async pump(s: Subscriber): Promise<void> {
    try {
      while (s.open) {
        if (s.state === 'hello') {
          await new Promise<void>((resolve) => (s.wake = resolve))
          continue
        }
        if (s.ws.bufferedAmount > this.writeContext.highWater) {
          await socketDrained(s.socket)
          continue
        }
        if (s.pending.length > 0) {
          s.pending = writeEvents(s, this.writeContext, s.pending)
          continue
        }
        if (s.lastSeq >= this.source.currentSeq()) {
          s.state = 'live'
          s.reachedLive = true
          await new Promise<void>((resolve) => (s.wake = resolve))
          if (s.open && s.lastSeq < this.source.currentSeq()) s.state = 'catchup'
          continue
        }
        if (s.lastSeq >= this.ring.floor) {
          const recent = this.ring.after(s.lastSeq, this.pageSize)
          if (recent.length > 0) {
            const rest = writeEvents(s, this.writeContext, recent)
            if (rest.length > 0) s.pending = rest
            continue
          }
          // The head is ahead of the ring (a commit not yet handed to committed()): looping here
          // would never yield to let it arrive, so read the log, which has every committed event.
        }
        const headBefore = this.source.currentSeq()
        const rows = await this.logReads.run(() => this.log.readPage(s.lastSeq, this.pageSize))
        if (!s.open) break
        if (rows.length === 0) {
          // Nothing retained up to the head as it was: move past the gap.
          s.lastSeq = Math.max(s.lastSeq, headBefore)
          continue
        }
        s.pending = writeEvents(
          s,
          this.writeContext,
          rows.map((r) => new JetEvent(r.seq, r.timeUs, r.did, r.frame)),
        )
      }
    } catch (err) {
      this.fail(s, err)
    }
  }

  private cutOff(s: Subscriber, reason: JetstreamCutOffReason, code: number, text: string): void {
    if (s.state === 'closed') return
    s.state = 'closed'
    this.metrics.countCutOff(reason)
    if (reason === 'too-slow' && s.wire === 'v2') {
      const message = `fell more than ${this.slowReaders.maxLag} events behind and read below ${this.slowReaders.minRate} events/s for ${Math.round(this.slowReaders.windowMs / 1000)} s`
      this.sendControl(s, `{"$type":"error","error":"ConsumerTooSlow","message":"${message}"}`)
    }
    s.ws.close(code, closeReason(text))
    s.signal()
    setTimeout(() => s.ws.terminate(), this.closeGraceMs).unref()
  }

  /** Like the firehose: a peer that answers no ping gets no close handshake either. */
  private dropUnresponsive(s: Subscriber): void {
    if (s.state === 'closed') return
    s.state = 'closed'
    this.metrics.countCutOff('unresponsive')
    this.logger.info({ subscriber: s.id, remoteAddress: s.remoteAddress, seq: s.lastSeq }, 'jetstream subscriber unresponsive; dropping')
    s.ws.terminate()
    s.signal()
  }

  /** A frame outside the event stream (#info, error), in the subscriber's encoding. */
  private sendControl(s: Subscriber, json: string): void {
    const bytes = Buffer.from(json)
    if (s.encoding === 'zstd') s.ws.send(this.codec(s.wire).compress(bytes), { binary: true })
    else s.ws.send(bytes, { binary: false })
  }

  private fail(s: Subscriber, err: unknown): void {
    if (s.state === 'closed') return
    this.logger.error({ err, subscriber: s.id, seq: s.lastSeq }, 'jetstream subscriber replay failed; closing')
    this.cutOff(s, 'error', 1011, 'InternalServerError')
  }
}
