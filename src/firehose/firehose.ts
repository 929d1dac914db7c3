/**
 * Outbound `com.atproto.sync.subscribeRepos` (PROTOCOL.md §1, DESIGN §1.4, §5).
 *
 * Each committed event is framed for the wire once and the same Buffer is
 * written to every live consumer's TCP socket (compression off). A consumer
 * whose socket buffer passes the high-water mark stops receiving broadcast
 * writes and catches up on its own, pulling from the in-memory ring and then
 * the event log as its socket drains; it rejoins the live set when it reaches
 * the head. One that, after having been live, is more than `maxConsumerLag`
 * seqs behind and has read slower than `minConsumerRate` for `slowWindowMs`
 * gets `ConsumerTooSlow` and is closed (slow-reader.ts); one that is behind but
 * keeps reading keeps going. Slow consumers never delay others, and each holds
 * at most about `highWaterBytes` of memory.
 *
 * This file owns the consumer set, the live fan-out and the cut-offs; request admission is
 * `subscribe-request.ts`, the per-consumer replay/catch-up loop `catch-up.ts`, the pacing
 * of live writes `live-batch.ts`.
 */
import type { IncomingMessage } from 'node:http'
import type { Socket } from 'node:net'
import type { Duplex } from 'node:stream'
import type { Logger } from 'pino'
import { Counter, Gauge, type Registry } from 'prom-client'
import WebSocket, { WebSocketServer } from 'ws'
import { encodeErrorFrame } from '../atproto/frame.js'
import { configDefault } from '../config.js'
import type { CommittedEvent, CommittedEventSource } from '../sequencer/types.js'
import { CatchUp, goLive, type ReplaySource } from './catch-up.js'
import { Consumer, type ConsumerInfo } from './consumer.js'
import { answerRaw } from '../http/raw-response.js'
import type { CutOffReason } from './cut-off-reasons.js'
import { LiveBatcher } from './live-batch.js'
import { DEFAULT_RING_MAX_BYTES, FrameRing, wsFrame, type RingEntry } from './ring.js'
import { SlowReaderPolicy, type SlowVerdict } from './slow-reader.js'
import { admitSubscribeRequest } from './subscribe-request.js'

export { SUBSCRIBE_REPOS_PATH } from './subscribe-request.js'
export type { ReplaySource } from './catch-up.js'

export interface FirehoseOptions {
  sequencer: CommittedEventSource
  eventLog: ReplaySource
  /** Recent events kept in memory for catching-up consumers. */
  ringSize?: number
  /** Byte bound on the ring's frames (default 32 MiB); the oldest go first when either bound is reached. */
  ringMaxBytes?: number
  /** RELAY_CONSUMER_MAX_LAG: seqs a (once live) consumer may fall behind before its read rate is judged. */
  maxConsumerLag: number
  /** RELAY_CONSUMER_MIN_RATE: seqs/s a consumer beyond the lag must keep reading, or ConsumerTooSlow. */
  minConsumerRate?: number
  /** RELAY_CONSUMER_SLOW_WINDOW: how long it may read below that rate before it is closed. */
  slowWindowMs?: number
  /** RELAY_FIREHOSE_FLUSH_INTERVAL: at most one live write per consumer per this interval (0: one per committed batch). */
  flushIntervalMs?: number
  /** Socket bytes buffered in user space before a consumer is switched to catch-up. */
  highWaterBytes?: number
  /** Idle consumers are pinged this often; one that never answers is dropped after two intervals. */
  pingIntervalMs?: number
  /** Events per log read while replaying. */
  replayPageSize?: number
  /** Concurrent log reads across all consumers (protects the database pool). */
  maxConcurrentLogReads?: number
  /** How long a closing consumer gets to finish the close handshake before its socket is destroyed. */
  closeGraceMs?: number
  logger: Logger
  registry: Registry
}

/** How often idle consumers are pinged (the firehose's and Jetstream's); one that never answers is dropped after two intervals. */
export const CONSUMER_PING_INTERVAL_MS = 30_000

export class Firehose {
  private readonly source: CommittedEventSource
  private ring: FrameRing
  private readonly slowReaders: SlowReaderPolicy
  private readonly live: LiveBatcher
  private readonly highWater: number
  private readonly pingIntervalMs: number
  private readonly closeGraceMs: number
  private readonly catchUp: CatchUp
  private readonly logger: Logger
  private readonly wss: WebSocketServer
  private readonly connected = new Map<number, Consumer>()
  private readonly unsubscribe: (() => void) | undefined
  private readonly pingTimer: NodeJS.Timeout
  private readonly slowTimer: NodeJS.Timeout
  private nextId = 0
  private closed = false

  private readonly mEvents: Counter
  private readonly mBytes: Counter
  private readonly mCutOff: Counter<'reason'>
  private readonly mConnections: Counter

  constructor(opts: FirehoseOptions) {
    this.source = opts.sequencer
    this.ring = new FrameRing(opts.ringSize ?? 10_000, opts.ringMaxBytes ?? DEFAULT_RING_MAX_BYTES)
    this.highWater = opts.highWaterBytes ?? 1 << 20
    this.pingIntervalMs = opts.pingIntervalMs ?? CONSUMER_PING_INTERVAL_MS
    this.closeGraceMs = opts.closeGraceMs ?? 2_000
    this.logger = opts.logger
    // Validates the lag, rate and window (RangeError).
    this.slowReaders = new SlowReaderPolicy({
      maxLag: opts.maxConsumerLag,
      minRate: opts.minConsumerRate ?? configDefault('consumerMinRate'),
      windowMs: opts.slowWindowMs ?? configDefault('consumerSlowWindowMs'),
    })
    this.live = new LiveBatcher(opts.flushIntervalMs ?? configDefault('firehoseFlushIntervalMs'), (entries) => this.fanOutOrCatchUp(entries))
    this.wss = new WebSocketServer({
      noServer: true,
      perMessageDeflate: false,
      clientTracking: false,
      // Consumers have nothing to say; cap what they can make us buffer.
      maxPayload: 64 * 1024,
    })
    const registers = [opts.registry]
    const consumers = this.connected
    new Gauge({
      name: 'relay_firehose_consumers',
      help: 'Connected firehose consumers, by state',
      labelNames: ['state'],
      registers,
      collect() {
        const counts = { live: 0, catchup: 0, closed: 0 }
        for (const c of consumers.values()) counts[c.state]++
        for (const [state, n] of Object.entries(counts)) this.set({ state }, n)
      },
    })
    this.mEvents = new Counter({ name: 'relay_firehose_events_sent_total', help: 'Events written to consumers', registers })
    this.mBytes = new Counter({ name: 'relay_firehose_bytes_sent_total', help: 'Bytes written to consumers', registers })
    this.mCutOff = new Counter({
      name: 'relay_firehose_consumers_cut_off_total',
      help: 'Consumers closed by the relay, by reason',
      labelNames: ['reason'],
      registers,
    })
    this.mConnections = new Counter({
      name: 'relay_firehose_connections_total',
      help: 'Accepted firehose connections',
      registers,
    })
    this.catchUp = new CatchUp({
      source: this.source,
      log: opts.eventLog,
      ring: () => this.ring,
      highWaterBytes: this.highWater,
      pageSize: opts.replayPageSize ?? 1000,
      maxConcurrentLogReads: opts.maxConcurrentLogReads ?? 2,
      logger: this.logger,
      eventsSent: this.mEvents,
      bytesSent: this.mBytes,
      fail: (c, err) => this.fail(c, err),
    })
    const unsub = this.source.onCommitted((events) => this.broadcast(events))
    this.unsubscribe = typeof unsub === 'function' ? unsub : undefined
    this.pingTimer = setInterval(() => this.pingIdle(), this.pingIntervalMs)
    this.pingTimer.unref()
    this.slowTimer = setInterval(() => this.cutOffSlow(), this.slowReaders.checkIntervalMs)
    this.slowTimer.unref()
  }

  /** Called by the HTTP server for upgrade requests to subscribeRepos. Validates the cursor before upgrading. */
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    if (this.closed) {
      answerRaw(socket, 503, 'ServiceUnavailable', 'the relay is shutting down')
      return
    }
    const admitted = admitSubscribeRequest(req, socket)
    if (admitted === undefined) return
    this.wss.handleUpgrade(req, socket, head, (ws) => this.accept(ws, req, admitted.cursor))
  }

  /** Every connected consumer, for the admin API. */
  consumers(): ConsumerInfo[] {
    const head = this.source.currentSeq()
    return [...this.connected.values()].map((c) => c.info(head))
  }

  /** Stops replaying an account's events from memory (takedown); the log is cleaned by the event log. */
  forgetAccount(accountId: number): number {
    return this.ring.removeAccount(accountId)
  }

  /**
   * The source's seqs went backwards (a splitter whose upstream reset or was switched): every
   * consumer is closed (1012, reconnect) and the ring emptied, so none is left at a position the
   * stream no longer has; a reconnecting consumer's cursor is judged against the new head.
   */
  resetStream(): void {
    this.ring = new FrameRing(this.ring.capacity, this.ring.maxBytes)
    this.live.clear()
    for (const c of this.connected.values()) {
      if (c.state === 'closed') continue
      c.state = 'closed'
      this.countCutOff('stream-reset')
      c.ws.close(1012, 'stream reset upstream; reconnect')
      setTimeout(() => c.ws.terminate(), this.closeGraceMs).unref()
    }
  }

  /** Closes every consumer (1001) and stops timers. */
  async close(): Promise<void> {
    if (this.closed) return
    this.closed = true
    clearInterval(this.pingTimer)
    clearInterval(this.slowTimer)
    this.unsubscribe?.()
    this.live.clear()
    const closing = [...this.connected.values()].map(
      (c) =>
        new Promise<void>((resolve) => {
          if (c.ws.readyState === WebSocket.CLOSED) return resolve()
          c.ws.once('close', () => resolve())
          c.state = 'closed'
          this.countCutOff('shutdown')
          c.ws.close(1001, 'relay shutting down')
        }),
    )
    const grace = new Promise<void>((resolve) => setTimeout(resolve, this.closeGraceMs).unref())
    await Promise.race([Promise.all(closing), grace])
    for (const c of this.connected.values()) c.ws.terminate()
    this.connected.clear()
    await new Promise<void>((resolve) => this.wss.close(() => resolve()))
  }

  private accept(ws: WebSocket, req: IncomingMessage, cursor: number | null): void {
    // The pre-framed fan-out writes here directly (safe: compression is off and ws writes control frames synchronously).
    const socket = (ws as unknown as { _socket: Socket })._socket
    const remoteAddress = req.socket.remoteAddress ?? ''
    const userAgent = req.headers['user-agent'] ?? ''
    const head = this.source.currentSeq()
    ws.on('error', (err) => this.logger.debug({ err, remoteAddress }, 'firehose consumer socket error'))
    if (this.closed) {
      ws.close(1001, 'relay shutting down')
      return
    }
    if (cursor !== null && cursor > head) {
      this.countCutOff('future-cursor')
      this.logger.info({ remoteAddress, cursor, seq: head }, 'firehose consumer asked for a future cursor')
      socket.write(wsFrame(encodeErrorFrame('FutureCursor', `cursor ${cursor} is ahead of the current seq ${head}`)))
      ws.close(1008, 'FutureCursor')
      setTimeout(() => ws.terminate(), this.closeGraceMs).unref()
      return
    }
    const c = new Consumer(++this.nextId, ws, socket, remoteAddress, userAgent, cursor, cursor ?? head)
    this.connected.set(c.id, c)
    this.mConnections.inc()
    ws.on('close', () => {
      c.state = 'closed'
      this.connected.delete(c.id)
    })
    ws.on('pong', () => {
      c.awaitingPong = false
    })
    this.logger.info({ consumer: c.id, remoteAddress, userAgent, cursor, seq: head }, 'firehose consumer connected')
    if (cursor === null) {
      goLive(c)
      return
    }
    void this.catchUp.startReplay(c, cursor, head)
  }

  private broadcast(events: CommittedEvent[]): void {
    if (events.length === 0) return
    const entries: RingEntry[] = new Array(events.length)
    for (let i = 0; i < events.length; i++) {
      const e = events[i] as CommittedEvent
      const entry: RingEntry = { seq: e.seq, accountId: e.accountId, wire: e.wire ?? wsFrame(e.frame), removed: false }
      entries[i] = entry
      this.ring.push(entry)
    }
    // In the ring now (catching-up consumers see them at once); written to the live set by the batcher.
    this.live.add(entries)
  }

  /**
   * fanOut, which the batcher may call from its timer, outside the sequencer's listener
   * loop that catches a listener's throw. If it throws, no live consumer may skip what
   * it missed: each one pulls from the ring (where every entry already is) from its own
   * last seq instead of taking the next batch blindly.
   */
  private fanOutOrCatchUp(entries: RingEntry[]): void {
    try {
      this.fanOut(entries)
    } catch (err) {
      this.logger.error({ err, seq: entries[entries.length - 1]?.seq }, 'firehose live write failed; live consumers catch up from the ring')
      for (const c of this.connected.values()) {
        if (c.state !== 'live') continue
        c.state = 'catchup'
        void this.catchUp.pump(c)
      }
    }
  }

  /** Writes entries (in seq order, already in the ring) to every live consumer. */
  private fanOut(entries: RingEntry[]): void {
    const first = (entries[0] as RingEntry).seq
    const head = (entries[entries.length - 1] as RingEntry).seq
    const now = Date.now()
    let sentEvents = 0
    let sentBytes = 0
    // The whole batch as one buffer, built once for every consumer that takes all of it: one write
    // (one syscall) per consumer per batch instead of one per event. Only where it fits under the
    // high-water mark, so a socket still never holds more than that plus one frame. Entries taken
    // down while held by the batcher are left out, as catch-up leaves them out.
    let batchWire: Buffer | undefined
    let batchBytes = 0
    let batchEvents = 0
    for (const e of entries) {
      if (e.removed) continue
      batchBytes += e.wire.length
      batchEvents++
    }
    for (const c of this.connected.values()) {
      if (c.state !== 'live') continue
      if (c.ws.readyState !== WebSocket.OPEN) {
        c.state = 'closed'
        continue
      }
      const socket = c.socket
      if (c.lastSent < first && socket.writableLength + batchBytes <= this.highWater) {
        batchWire ??= entries.length === 1 && batchEvents === 1 ? (entries[0] as RingEntry).wire : Buffer.concat(entries.filter((e) => !e.removed).map((e) => e.wire))
        if (batchBytes > 0) socket.write(batchWire)
        c.lastSent = head
        c.eventsSent += batchEvents
        c.lastWriteAt = now
        sentEvents += batchEvents
        sentBytes += batchBytes
        continue
      }
      let i = 0
      socket.cork()
      for (; i < entries.length; i++) {
        const entry = entries[i] as RingEntry
        // Already sent while catching up from the log just before going live.
        if (entry.seq <= c.lastSent) continue
        if (socket.writableLength > this.highWater) break
        c.lastSent = entry.seq
        if (entry.removed) continue
        socket.write(entry.wire)
        c.eventsSent++
        sentEvents++
        sentBytes += entry.wire.length
      }
      socket.uncork()
      c.lastWriteAt = now
      if (i < entries.length) {
        // The socket is not keeping up: stop buffering for it, it pulls from the ring as it drains.
        c.state = 'catchup'
        void this.catchUp.pump(c)
      }
    }
    if (sentEvents > 0) {
      this.mEvents.inc(sentEvents)
      this.mBytes.inc(sentBytes)
    }
  }

  /** Closes once-live consumers that are beyond the lag and have read below the floor rate for the window. */
  /** Slow-reader sweeps so far (SlowReaderPolicy.sweeps). */
  get slowReaderSweeps(): number {
    return this.slowReaders.sweeps
  }

  private cutOffSlow(): void {
    this.slowReaders.sweep(this.connected.values(), (c) => c.lastSent, this.source.currentSeq(), Date.now(), (c, verdict) => this.cutOff(c, verdict))
  }

  private cutOff(c: Consumer, verdict: SlowVerdict & { slow: true }): void {
    if (c.state === 'closed') return
    c.state = 'closed'
    this.countCutOff('too-slow')
    const { lag, rate, seconds } = verdict
    this.logger.warn({ consumer: c.id, remoteAddress: c.remoteAddress, lag, rate: Math.round(rate), seconds, seq: c.lastSent }, 'firehose consumer too slow; closing')
    // Appended behind whatever is buffered; the socket is destroyed after the grace period either way,
    // so a stalled consumer holds at most its high-water mark plus this frame.
    const message = `consumer fell ${lag} events behind and read ${Math.round(rate)} events/s for ${Math.round(seconds)} s (floor ${this.slowReaders.minRate})`
    c.send(wsFrame(encodeErrorFrame('ConsumerTooSlow', message)))
    c.ws.close(1008, 'ConsumerTooSlow')
    setTimeout(() => c.ws.terminate(), this.closeGraceMs).unref()
  }

  private countCutOff(reason: CutOffReason): void {
    this.mCutOff.inc({ reason })
  }

  private fail(c: Consumer, err: unknown): void {
    if (c.state === 'closed') return
    c.state = 'closed'
    this.countCutOff('error')
    this.logger.error({ err, consumer: c.id, seq: c.lastSent }, 'firehose consumer replay failed; closing')
    c.ws.close(1011, 'InternalServerError')
    setTimeout(() => c.ws.terminate(), this.closeGraceMs).unref()
  }

  private pingIdle(): void {
    const now = Date.now()
    for (const c of this.connected.values()) {
      if (c.state === 'closed') continue
      if (c.awaitingPong && now - c.lastWriteAt >= 2 * this.pingIntervalMs) {
        c.state = 'closed'
        this.countCutOff('unresponsive')
        this.logger.info({ consumer: c.id, remoteAddress: c.remoteAddress }, 'firehose consumer unresponsive; dropping')
        c.ws.terminate()
        continue
      }
      if (!c.awaitingPong && now - c.lastWriteAt >= this.pingIntervalMs) {
        c.awaitingPong = true
        c.lastWriteAt = now
        c.ws.ping()
      }
    }
  }
}
