/**
 * The sequencer: assigns the relay's seq to accepted events, builds each
 * outbound frame once, and commits events in batches (bounded by size and
 * time) in one transaction together with account heads, host cursors and the
 * seq high-water mark. Frames are published to listeners only after commit.
 *
 * A failed batch is retried with backoff, unchanged: its seqs stay reserved
 * and later events wait behind it, so seqs are never reused or reordered and
 * nothing uncommitted is ever published.
 *
 * This file owns seq/time assignment, the batching queue and publishing to listeners;
 * building and committing one batch (with its retries) is `batch-commit.ts`.
 */
import { setTimeout as sleep } from 'node:timers/promises'
import type { Logger } from 'pino'
import { Counter, Gauge, Histogram, type Registry } from 'prom-client'
import type { DropReason } from '../atproto/drop-reasons.js'
import { frameWithSeqAfter } from '../atproto/frame.js'
import { MAX_WS_HEADER_BYTES, writeWsHeader } from '../http/ws-frame-header.js'
import type { Storage } from '../storage/db.js'
import { EventKind, type EventKindCode } from '../storage/types.js'
import { BatchCommitter, SEQ_STATE_KEY, type PendingEvent } from './batch-commit.js'
import { batchLength, committedThrough, MAX_BATCH_BYTES, MAX_BATCH_EVENTS } from './batch-statement.js'
import { EventClock } from './event-clock.js'
import { EventLog } from './event-log.js'
import { HostCursorTracker, type TicketMisuse, type UpstreamTicket } from './host-cursors.js'
import {
  SequencerError,
  type AcceptedEvent,
  type CommittedEvent,
  type CommittedEventSource,
} from './types.js'

export { SEQ_STATE_KEY } from './batch-commit.js'

export interface SequencerOptions {
  storage: Storage
  /** RELAY_INITIAL_SEQ: the first seq ever assigned is at least this. */
  initialSeq: number
  maxBatchEvents?: number
  /** Frame bytes per batch (default MAX_BATCH_BYTES). */
  maxBatchBytes?: number
  maxBatchDelayMs?: number
  /** Seqs per event-log partition. */
  partitionSize?: number
  /** Retention window of the event log (RELAY_REPLAY_WINDOW). */
  replayWindowMs?: number
  /** How often retention runs; 0 disables the timer. */
  retentionIntervalMs?: number
  /** How long stop() waits for a failing database before giving up on queued events. */
  stopTimeoutMs?: number
  logger: Logger
  registry: Registry
  /**
   * A ticket resolved twice or left unresolved is always counted and logged;
   * 'throw' also throws at the call site (the default under the test runner).
   */
  ticketMisuse?: 'count' | 'throw'
}

const KIND_CODES: Record<AcceptedEvent['kind'], EventKindCode> = EventKind

export class Sequencer implements CommittedEventSource {
  readonly eventLog: EventLog
  private readonly storage: Storage
  private readonly logger: Logger
  private readonly initialSeq: number
  private readonly maxBatchEvents: number
  private readonly maxBatchBytes: number
  private readonly maxBatchDelayMs: number
  private readonly stopTimeoutMs: number
  private readonly cursors: HostCursorTracker
  private readonly committer: BatchCommitter
  private readonly listeners: ((events: CommittedEvent[]) => void)[] = []
  private queue: PendingEvent[] = []
  private assigned = 0
  /** Gives each assigned seq its time_us (strictly increasing, across restarts). */
  private readonly clock = new EventClock()
  private committed = 0
  private started = false
  private stopping = false
  private abandon = false
  private timer: NodeJS.Timeout | undefined
  private loop: Promise<void> | undefined

  private readonly mSeq: Gauge
  private readonly mCommitted: Counter
  private readonly mBatchSize: Histogram
  private readonly mTicketMisuse: Counter<'kind'>

  constructor(opts: SequencerOptions) {
    this.storage = opts.storage
    this.logger = opts.logger
    this.initialSeq = opts.initialSeq
    this.maxBatchEvents = opts.maxBatchEvents ?? 500
    // A batch is one statement, bounded in events and bytes (batch-statement.ts).
    if (!Number.isInteger(this.maxBatchEvents) || this.maxBatchEvents < 1 || this.maxBatchEvents > MAX_BATCH_EVENTS) {
      throw new RangeError(`maxBatchEvents must be an integer from 1 to ${MAX_BATCH_EVENTS}, got ${this.maxBatchEvents}`)
    }
    this.maxBatchBytes = opts.maxBatchBytes ?? MAX_BATCH_BYTES
    this.maxBatchDelayMs = opts.maxBatchDelayMs ?? 10
    this.stopTimeoutMs = opts.stopTimeoutMs ?? 30_000
    if (!Number.isSafeInteger(opts.initialSeq) || opts.initialSeq < 0) {
      throw new RangeError(`initialSeq must be a non-negative integer, got ${opts.initialSeq}`)
    }
    this.eventLog = new EventLog({
      storage: opts.storage,
      ...(opts.partitionSize !== undefined ? { partitionSize: opts.partitionSize } : {}),
      ...(opts.replayWindowMs !== undefined ? { replayWindowMs: opts.replayWindowMs } : {}),
      ...(opts.retentionIntervalMs !== undefined ? { retentionIntervalMs: opts.retentionIntervalMs } : {}),
      currentSeq: () => this.committed,
      logger: opts.logger,
      registry: opts.registry,
    })
    const registers = [opts.registry]
    this.mSeq = new Gauge({ name: 'relay_sequencer_seq', help: 'Newest committed relay seq', registers })
    this.mCommitted = new Counter({
      name: 'relay_sequencer_events_committed_total',
      help: 'Events committed to the log',
      registers,
    })
    this.mBatchSize = new Histogram({
      name: 'relay_sequencer_batch_events',
      help: 'Events per committed batch',
      buckets: [1, 5, 20, 50, 100, 200, 500, 1000, 2000],
      registers,
    })
    const throwOnMisuse = (opts.ticketMisuse ?? (process.env.VITEST ? 'throw' : 'count')) === 'throw'
    this.cursors = new HostCursorTracker({
      onMisuse: (kind: TicketMisuse, ticket, detail) => {
        this.mTicketMisuse.inc({ kind })
        this.logger.error({ kind, hostId: ticket.hostId, seq: ticket.seq }, `upstream ticket misuse: ${detail}`)
        if (throwOnMisuse) throw new Error(`upstream ticket ${ticket.hostId}/${ticket.seq}: ${kind}: ${detail}`)
      },
      // A drop moves a cursor without an event: it is written with the next batch, or an empty one.
      onDropped: () => this.schedule(),
    })
    this.committer = new BatchCommitter({
      storage: opts.storage,
      eventLog: this.eventLog,
      cursors: this.cursors,
      logger: opts.logger,
      registry: opts.registry,
      queued: () => this.queue.length,
      abandoned: () => this.abandon,
    })
    // Registered after the committer's metrics, as before the split (same /metrics order).
    this.mTicketMisuse = new Counter({
      name: 'relay_upstream_ticket_errors_total',
      help: 'Upstream tickets resolved twice or left unresolved (a relay bug; the host cursor is kept safe)',
      labelNames: ['kind'],
      registers,
    })
    const queue = () => this.queue.length
    new Gauge({
      name: 'relay_sequencer_queued_events',
      help: 'Events waiting to be committed',
      registers,
      collect() {
        this.set(queue())
      },
    })
  }

  /** Reads the last committed seq and continues above it. */
  async start(): Promise<void> {
    if (this.started) return
    const stored = await committedThrough(this.storage.db, SEQ_STATE_KEY)
    const newest = (await this.eventLog.newestSeq()) ?? 0
    this.committed = Math.max(this.initialSeq - 1, stored, newest, 0)
    this.assigned = this.committed
    await this.clock.resume(this.storage.db)
    this.mSeq.set(this.committed)
    await this.eventLog.ensurePartitions(this.committed + 1)
    this.eventLog.start()
    this.started = true
    this.stopping = false
    this.logger.info({ seq: this.committed }, 'sequencer started')
  }

  /** Resolves with the event's seq once it is durably committed. */
  submit(evt: AcceptedEvent): Promise<number> {
    try {
      return this.take(evt)
    } catch (err) {
      return Promise.reject(err as Error)
    }
  }

  /**
   * `submit`, except that an event the sequencer cannot take throws here and now. Once this
   * returns, the event has its seq and is committed in submission order, or not at all if
   * the sequencer stops first (then the promise rejects and its ticket is deferred): so the
   * caller may act on it at once, as ingest does with the account's head.
   */
  take(evt: AcceptedEvent): Promise<number> {
    if (!this.started) throw new SequencerError('not-started', 'sequencer not started')
    if (this.stopping) throw new SequencerError('stopped', 'sequencer is stopping')
    const kind = KIND_CODES[evt.kind]
    if (kind === undefined) throw new SequencerError('invalid-event', `unknown event kind ${String(evt.kind)}`)
    // Built once with room in front for the WebSocket header: consumers get this buffer as it is.
    const buf = frameWithSeqAfter(MAX_WS_HEADER_BYTES, evt.t, evt.body, this.assigned + 1)
    const frame = buf.subarray(MAX_WS_HEADER_BYTES)
    const start = writeWsHeader(buf, MAX_WS_HEADER_BYTES, frame.length)
    const wire = Buffer.from(buf.buffer, buf.byteOffset + start, buf.length - start)
    if (evt.ticket !== undefined) this.cursors.submitted(evt.ticket)
    const seq = ++this.assigned
    // Jetstream's cursor: assigned once with the seq.
    const timeUs = this.clock.next()
    return new Promise<number>((resolve, reject) => {
      this.queue.push({ evt, seq, timeUs, kind, frame, wire, resolve, reject })
      this.schedule()
    })
  }

  /**
   * A frame with upstream `seq` arrived from `hostId` (the crawler calls this).
   * The host cursor cannot pass it until its ticket is committed (by submit)
   * or dropped; a drop is written with the next batch.
   */
  openTicket(hostId: number, seq: number): UpstreamTicket {
    return this.cursors.open(hostId, seq)
  }

  /** Where ingest ends with a ticket: one still open is a bug, reported and dropped under `reason`. Returns whether it was. */
  settleTicket(ticket: UpstreamTicket, reason: DropReason): boolean {
    return this.cursors.settle(ticket, reason)
  }

  /** Forget in-flight tracking for a host whose upstream sequence was reset. */
  resetHost(hostId: number): void {
    this.cursors.reset(hostId)
  }

  /** The host cursor as handled in memory (may be ahead of the database by one batch). */
  hostCursor(hostId: number): number | undefined {
    return this.cursors.cursor(hostId)
  }

  /** Listeners run synchronously after each commit, in seq order. Returns an unsubscribe function. */
  onCommitted(listener: (events: CommittedEvent[]) => void): () => void {
    this.listeners.push(listener)
    return () => {
      const i = this.listeners.indexOf(listener)
      if (i >= 0) this.listeners.splice(i, 1)
    }
  }

  /** The newest committed (and published) seq. */
  currentSeq(): number {
    return this.committed
  }

  /** Events submitted but not yet committed: ingest can use it for backpressure. */
  queuedEvents(): number {
    return this.queue.length
  }

  /** Commits what is queued, then stops. Queued events are rejected if the database stays down past stopTimeoutMs. */
  async stop(): Promise<void> {
    if (!this.started) return
    this.stopping = true
    if (this.timer !== undefined) clearTimeout(this.timer)
    this.timer = undefined
    if (this.loop === undefined) this.runLoop()
    const deadline = sleep(this.stopTimeoutMs, 'timeout' as const, { ref: false })
    const outcome = await Promise.race([this.loop?.then(() => 'done' as const), deadline])
    if (outcome === 'timeout') {
      this.abandon = true
      await this.loop
    }
    await this.eventLog.stop()
    this.started = false
    this.logger.info({ seq: this.committed }, 'sequencer stopped')
  }

  private schedule(): void {
    if (this.loop !== undefined) return
    if (this.queue.length >= this.maxBatchEvents || this.stopping) {
      if (this.timer !== undefined) clearTimeout(this.timer)
      this.timer = undefined
      this.runLoop()
    } else if (this.timer === undefined) {
      this.timer = setTimeout(() => {
        this.timer = undefined
        this.runLoop()
      }, this.maxBatchDelayMs)
    }
  }

  private runLoop(): void {
    if (this.loop !== undefined) return
    this.loop = this.drain().finally(() => {
      this.loop = undefined
      if (this.queue.length > 0 && !this.abandon) this.schedule()
    })
  }

  /** Commits batches until nothing is queued (group commit: events arriving during a commit form the next batch). */
  private async drain(): Promise<void> {
    while (this.queue.length > 0 || this.cursors.hasUnwritten()) {
      const batch = this.queue.slice(0, batchLength(this.queue, this.maxBatchEvents, this.maxBatchBytes, (p) => p.frame.length))
      const ok = await this.committer.commitWithRetry(batch)
      if (!ok) {
        this.rejectAll(new SequencerError('stopped', 'sequencer stopped before the event could be committed'))
        return
      }
      this.queue.splice(0, batch.length)
      this.afterCommit(batch)
    }
  }

  private afterCommit(batch: PendingEvent[]): void {
    if (batch.length === 0) return
    const last = batch[batch.length - 1] as PendingEvent
    this.committed = last.seq
    this.mSeq.set(last.seq)
    this.mCommitted.inc(batch.length)
    this.mBatchSize.observe(batch.length)
    const events: CommittedEvent[] = new Array(batch.length)
    for (let i = 0; i < batch.length; i++) {
      const p = batch[i] as PendingEvent
      if (p.evt.ticket !== undefined) this.cursors.committed(p.evt.ticket)
      events[i] = { seq: p.seq, timeUs: p.timeUs, accountId: p.evt.accountId, did: p.evt.did, kind: p.kind, t: p.evt.t, frame: p.frame, wire: p.wire }
      p.resolve(p.seq)
    }
    for (const listener of this.listeners) {
      try {
        listener(events)
      } catch (err) {
        this.logger.error({ err, seq: last.seq }, 'committed-event listener threw')
      }
    }
  }

  private rejectAll(err: Error): void {
    const queued = this.queue
    this.queue = []
    for (const p of queued) {
      if (p.evt.ticket !== undefined) this.cursors.defer(p.evt.ticket, 'not-committed')
      p.reject(err)
    }
    if (queued.length > 0) this.logger.error({ dropped: queued.length }, 'sequencer stopped with uncommitted events (not acknowledged upstream)')
  }
}
