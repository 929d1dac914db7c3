/**
 * The splitter's event log: upstream frames stored unchanged in the relay's
 * own `event` table (same partitions, same retention, same replay code), keyed
 * by the UPSTREAM seq, so every splitter of one relay numbers events the same
 * way and a consumer's cursor is good on any of them.
 *
 * Frames are committed in batches, each batch one statement together with the
 * splitter's cursor (`relay_state` key `splitter_seq`: the newest stored
 * upstream seq), and published to the firehose only after commit. A failed
 * commit is retried with backoff, unchanged, forever (nothing is acknowledged
 * upstream: after a crash the cursor is where the log ends, so the upstream
 * sends the rest again, no gap and no duplicate).
 *
 * Columns the relay fills from its own state: `account_id` is 0 (the splitter
 * keeps no accounts; ids start at 1, so no relay query by account, such as a
 * takedown's, can match a splitter row; there is no foreign key) and
 * `commit_cid` is null (bodies are never decoded; getCommitPath is proxied).
 *
 * When the upstream's seq space changes under the log (the upstream reset, or
 * the splitter switched to another relay) the log is rewound: `rewind(fromSeq)`
 * deletes every stored event at or above `fromSeq`, in order with the queued
 * writes, and tells the firehose to let go of its consumers (see
 * docs/architecture.md §8).
 */
import { setTimeout as sleep } from 'node:timers/promises'
import type { Logger } from 'pino'
import { Counter, Gauge, type Registry } from 'prom-client'
import { backoffCeiling, type BackoffOptions } from '../backoff.js'
import { batchCommitStatement, batchLength, committedThrough, MAX_BATCH_BYTES, MAX_BATCH_EVENTS } from '../sequencer/batch-statement.js'
import { EventClock } from '../sequencer/event-clock.js'
import { EventLog, type EventRow } from '../sequencer/event-log.js'
import type { CommittedEvent, CommittedEventSource } from '../sequencer/types.js'
import type { Storage } from '../storage/db.js'
import type { EventKindCode } from '../storage/types.js'
import { ensurePartitionsFor, rewindStoredLog, SPLITTER_SEQ_KEY, SPLITTER_UPSTREAM_KEY } from './splitter-store.js'

export { SPLITTER_SEQ_KEY, SPLITTER_UPSTREAM_KEY } from './splitter-store.js'
/** The account id of every splitter row (see the file comment). */
export const SPLITTER_ACCOUNT_ID = 0

const COMMIT_RETRY_BACKOFF: BackoffOptions = { baseMs: 50, maxMs: 5_000 }

export interface UpstreamEvent {
  seq: number
  t: string
  /** Kind code for the `kind` column (0 for a type the relay itself never emits). */
  code: number
  /** The event's account (`repo`/`did` of the body; '' when it has none): Jetstream filters on it. */
  did: string
  /** The frame exactly as the upstream sent it. */
  frame: Uint8Array
  /** This splitter's time_us for the event (Jetstream's cursor; splitters stamp their own), set when committed. */
  timeUs?: number
}

export type RewindReason = 'upstream-reset' | 'upstream-switch'

interface Rewind {
  kind: 'rewind'
  fromSeq: number
  upstream: string
  reason: RewindReason
}
type Item = { kind: 'event'; event: UpstreamEvent } | Rewind

export interface SplitterLogOptions {
  storage: Storage
  partitionSize?: number
  replayWindowMs?: number
  retentionIntervalMs?: number
  maxBatchEvents?: number
  maxBatchDelayMs?: number
  /** Items queued before `hasRoom()` turns false (the upstream socket is paused). */
  maxQueued?: number
  /** How long stop() waits for a failing database before giving up on queued events. */
  stopTimeoutMs?: number
  logger: Logger
  registry: Registry
}

export class SplitterLog implements CommittedEventSource {
  readonly eventLog: EventLog
  private readonly storage: Storage
  private readonly logger: Logger
  private readonly maxBatch: number
  private readonly maxDelayMs: number
  private readonly maxQueued: number
  private readonly stopTimeoutMs: number
  private readonly listeners: ((events: CommittedEvent[]) => void)[] = []
  private readonly rewindListeners: ((reason: RewindReason) => void)[] = []
  private roomWaiters: (() => void)[] = []
  private items: Item[] = []
  private committed = 0
  private readonly clock = new EventClock()
  private accepted = 0
  private storedUpstream: string | undefined
  private timer: NodeJS.Timeout | undefined
  private loop: Promise<void> | undefined
  private stopping = false
  private abandon = false

  private readonly mSeq: Gauge
  private readonly mStored: Counter
  private readonly mFailures: Counter
  private readonly mDuplicates: Counter
  private readonly mRewinds: Counter<'reason'>

  constructor(opts: SplitterLogOptions) {
    this.storage = opts.storage
    this.logger = opts.logger
    this.maxBatch = opts.maxBatchEvents ?? 500
    if (!Number.isInteger(this.maxBatch) || this.maxBatch < 1 || this.maxBatch > MAX_BATCH_EVENTS) {
      throw new RangeError(`maxBatchEvents must be an integer from 1 to ${MAX_BATCH_EVENTS}, got ${this.maxBatch}`)
    }
    this.maxDelayMs = opts.maxBatchDelayMs ?? 10
    this.maxQueued = opts.maxQueued ?? 5_000
    this.stopTimeoutMs = opts.stopTimeoutMs ?? 30_000
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
    this.mSeq = new Gauge({ name: 'relay_splitter_seq', help: 'Newest stored upstream seq (what consumers are served up to)', registers })
    this.mStored = new Counter({ name: 'relay_splitter_events_stored_total', help: 'Upstream events committed to the splitter log', registers })
    this.mFailures = new Counter({ name: 'relay_splitter_commit_failures_total', help: 'Failed batch commits of the splitter log (each is retried)', registers })
    this.mDuplicates = new Counter({
      name: 'relay_splitter_duplicate_events_total',
      help: 'Upstream events at or below the stored seq (sent again after a reconnect), skipped',
      registers,
    })
    this.mRewinds = new Counter({
      name: 'relay_splitter_rewinds_total',
      help: "Times the splitter log was cut back because the upstream's seq space changed, by reason",
      labelNames: ['reason'],
      registers,
    })
    const items = () => this.items.length
    new Gauge({
      name: 'relay_splitter_queued_events',
      help: 'Upstream events waiting to be committed',
      registers,
      collect() {
        this.set(items())
      },
    })
  }

  async start(): Promise<void> {
    const rows = await this.storage.db
      .selectFrom('relay_state')
      .select(['key', 'value'])
      .where('key', 'in', [SPLITTER_SEQ_KEY, SPLITTER_UPSTREAM_KEY])
      .execute()
    const value = (key: string) => rows.find((r) => r.key === key)?.value
    const stored = Number(value(SPLITTER_SEQ_KEY) ?? 0)
    const upstream = value(SPLITTER_UPSTREAM_KEY)
    this.storedUpstream = typeof upstream === 'string' ? upstream : undefined
    const newest = (await this.eventLog.newestSeq()) ?? 0
    this.committed = Math.max(Number.isSafeInteger(stored) ? stored : 0, newest)
    this.accepted = this.committed
    await this.clock.resume(this.storage.db)
    this.mSeq.set(this.committed)
    await this.eventLog.ensurePartitions(this.committed + 1)
    this.eventLog.start()
    this.logger.info({ seq: this.committed, upstream: this.storedUpstream }, 'splitter log opened')
  }

  /** The upstream whose seq space the stored log is in (undefined: never connected). */
  get upstream(): string | undefined {
    return this.storedUpstream
  }

  /** Where to resume the upstream subscription: the newest accepted seq, or undefined (nothing stored: go live). */
  resumeCursor(): number | undefined {
    return this.accepted > 0 ? this.accepted : undefined
  }

  /** The newest accepted seq (queued or committed), 0 when none. */
  acceptedSeq(): number {
    return this.accepted
  }

  /** Queues an upstream event; false (and counted) when its seq is not above the last accepted one. */
  append(event: UpstreamEvent): boolean {
    if (event.seq <= this.accepted) {
      this.mDuplicates.inc()
      return false
    }
    this.accepted = event.seq
    this.items.push({ kind: 'event', event })
    this.schedule()
    return true
  }

  /**
   * The upstream's seq space changed: every stored event at or above `fromSeq` (0: all of them)
   * is deleted once the writes queued before this are done, `upstream` is recorded as the log's
   * seq space, and the firehose lets go of its consumers. Events appended after this call follow it.
   */
  rewind(fromSeq: number, upstream: string, reason: RewindReason): void {
    this.accepted = Math.max(0, Math.min(this.accepted, fromSeq - 1))
    this.storedUpstream = upstream
    this.items.push({ kind: 'rewind', fromSeq, upstream, reason })
    this.schedule()
  }

  /** False while the queue is full: the upstream client pauses its socket until `waitForRoom` resolves. */
  hasRoom(): boolean {
    return this.items.length < this.maxQueued
  }

  waitForRoom(): Promise<void> {
    if (this.items.length <= this.maxQueued / 2 || this.abandon) return Promise.resolve()
    return new Promise((resolve) => this.roomWaiters.push(resolve))
  }

  queuedEvents(): number {
    return this.items.length
  }

  onCommitted(listener: (events: CommittedEvent[]) => void): () => void {
    this.listeners.push(listener)
    return () => {
      const i = this.listeners.indexOf(listener)
      if (i >= 0) this.listeners.splice(i, 1)
    }
  }

  /** Runs after a rewind committed (the firehose closes its consumers and empties its ring). */
  onRewind(listener: (reason: RewindReason) => void): void {
    this.rewindListeners.push(listener)
  }

  currentSeq(): number {
    return this.committed
  }

  /** Commits what is queued (bounded by stopTimeoutMs while the database is down), then stops retention. */
  async stop(): Promise<void> {
    this.stopping = true
    if (this.timer !== undefined) clearTimeout(this.timer)
    this.timer = undefined
    this.runLoop()
    const deadline = sleep(this.stopTimeoutMs, 'timeout' as const, { ref: false })
    const outcome = await Promise.race([(this.loop ?? Promise.resolve()).then(() => 'done' as const), deadline])
    if (outcome === 'timeout') {
      this.abandon = true
      await this.loop
      this.logger.error({ queued: this.items.length, seq: this.committed }, 'splitter log stopped with uncommitted events (the upstream sends them again after a restart)')
    }
    this.releaseRoomWaiters()
    await this.eventLog.stop()
  }

  private schedule(): void {
    if (this.loop !== undefined) return
    if (this.items.length >= this.maxBatch || this.stopping || this.items[0]?.kind === 'rewind') {
      if (this.timer !== undefined) clearTimeout(this.timer)
      this.timer = undefined
      this.runLoop()
    } else if (this.timer === undefined) {
      this.timer = setTimeout(() => {
        this.timer = undefined
        this.runLoop()
      }, this.maxDelayMs)
    }
  }

  private runLoop(): void {
    if (this.loop !== undefined || this.items.length === 0) return
    this.loop = this.drain().finally(() => {
      this.loop = undefined
      if (this.items.length > 0 && !this.abandon) this.schedule()
    })
  }

  private async drain(): Promise<void> {
    while (this.items.length > 0 && !this.abandon) {
      const head = this.items[0] as Item
      if (head.kind === 'rewind') {
        const newest = await this.withRetry(() => rewindStoredLog(this.storage, this.eventLog, this.logger, head.fromSeq, head.upstream), { fromSeq: head.fromSeq })
        if (newest === undefined) return
        this.items.shift()
        this.afterRewind(head, newest)
        continue
      }
      let events = 0
      while (events < this.items.length && events < this.maxBatch && (this.items[events] as Item).kind === 'event') events++
      const n = batchLength(this.items.slice(0, events), events, MAX_BATCH_BYTES, (item) => (item as { event: UpstreamEvent }).event.frame.length)
      const batch = this.items.slice(0, n).map((item) => (item as { event: UpstreamEvent }).event)
      const ok = await this.withRetry((attempt) => this.commit(batch, attempt > 1), { firstSeq: batch[0]?.seq, lastSeq: batch[n - 1]?.seq })
      if (ok === undefined) return
      this.items.splice(0, n)
      this.afterCommit(batch)
    }
  }

  /** Runs `fn` until it succeeds (undefined only when stop gave up on a failing database). */
  private async withRetry<T>(fn: (attempt: number) => Promise<T>, fields: Record<string, unknown>): Promise<T | undefined> {
    for (let attempt = 1; ; attempt++) {
      if (this.abandon) return undefined
      try {
        return await fn(attempt)
      } catch (err) {
        this.mFailures.inc()
        const level = attempt >= 5 ? 'error' : 'warn'
        this.logger[level]({ err, attempt, ...fields, queued: this.items.length }, 'splitter log write failed; retrying (events are held, not lost)')
        await sleep(backoffCeiling(attempt, COMMIT_RETRY_BACKOFF), undefined, { ref: false })
      }
    }
  }

  /** `retry`: an earlier attempt failed, perhaps after it had committed (then it is not run again: its rows exist). */
  private async commit(batch: UpstreamEvent[], retry: boolean): Promise<boolean> {
    const first = batch[0]
    const last = batch[batch.length - 1]
    if (first === undefined || last === undefined) return true
    if (retry && (await committedThrough(this.storage.db, SPLITTER_SEQ_KEY)) >= last.seq) {
      this.logger.warn({ firstSeq: first.seq, lastSeq: last.seq }, 'splitter log write had succeeded although it reported a failure; not run again')
      return true
    }
    await ensurePartitionsFor(this.eventLog, batch.map((e) => e.seq))
    for (const e of batch) e.timeUs ??= this.clock.next()
    const rows: EventRow[] = batch.map((e) => ({
      seq: e.seq,
      timeUs: e.timeUs as number,
      accountId: SPLITTER_ACCOUNT_ID,
      // 0 for a sequenced type the relay itself never emits: kept and forwarded all the same.
      kind: e.code as EventKindCode,
      frame: e.frame,
      commitCid: null,
    }))
    const statement = batchCommitStatement({ events: rows, heads: new Map(), cursors: new Map(), highWater: { key: SPLITTER_SEQ_KEY, seq: last.seq } })
    if (statement !== undefined) await this.storage.executeRepeated(statement)
    return true
  }

  private afterCommit(batch: UpstreamEvent[]): void {
    const last = batch[batch.length - 1]
    if (last === undefined) return
    this.committed = last.seq
    this.mSeq.set(last.seq)
    this.mStored.inc(batch.length)
    const events: CommittedEvent[] = batch.map((e) => ({ seq: e.seq, timeUs: e.timeUs as number, accountId: SPLITTER_ACCOUNT_ID, did: e.did, kind: e.code as EventKindCode, t: e.t, frame: e.frame }))
    for (const listener of this.listeners) {
      try {
        listener(events)
      } catch (err) {
        this.logger.error({ err, seq: last.seq }, 'committed-event listener threw')
      }
    }
    if (this.items.length <= this.maxQueued / 2) this.releaseRoomWaiters()
  }

  private afterRewind(r: Rewind, newest: number): void {
    const before = this.committed
    this.committed = newest
    this.mSeq.set(newest)
    if (before <= newest) {
      // Nothing was stored at or above fromSeq (a first start): no consumer is past the new seqs.
      this.logger.info({ upstream: r.upstream, seq: newest }, 'splitter log follows the seq space of this upstream')
      return
    }
    this.mRewinds.inc({ reason: r.reason })
    this.logger.warn({ reason: r.reason, upstream: r.upstream, fromSeq: r.fromSeq, seqBefore: before, seq: newest }, 'splitter log rewound: the upstream seq space changed')
    for (const listener of this.rewindListeners) {
      try {
        listener(r.reason)
      } catch (err) {
        this.logger.error({ err }, 'rewind listener threw')
      }
    }
  }

  private releaseRoomWaiters(): void {
    const waiters = this.roomWaiters
    this.roomWaiters = []
    for (const w of waiters) w()
  }
}
