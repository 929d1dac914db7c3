/**
 * Commits one batch of sequenced events: the event rows, account heads, host cursors, collection
 * counts and the seq high-water mark as one statement (batch-statement.ts). A failed commit is
 * retried with backoff, unchanged, until it succeeds or the sequencer abandons its queue, so
 * seqs are never reused or reordered. A retry first asks whether the failed attempt had committed
 * after all (the failure came after the statement was sent), and then does not run it again.
 * Seq/time assignment and publishing are the Sequencer's.
 */
import { setTimeout as sleep } from 'node:timers/promises'
import type { Logger } from 'pino'
import { Counter, Gauge, Histogram, type Registry } from 'prom-client'
import { backoffCeiling, type BackoffOptions } from '../backoff.js'
import type { Storage } from '../storage/db.js'
import type { AccountHead, EventKindCode } from '../storage/types.js'
import { batchCommitStatement, committedThrough } from './batch-statement.js'
import { reduceCollectionDeltas } from './collection-writes.js'
import type { EventLog, EventRow } from './event-log.js'
import type { HostCursorTracker } from './host-cursors.js'
import type { AcceptedEvent } from './types.js'

/** `relay_state` key holding the highest committed seq (survives retention and takedowns). */
export const SEQ_STATE_KEY = 'seq'

/** A failed commit is retried quickly at first (a blip), then every 5 s at most while Postgres is away. */
const COMMIT_RETRY_BACKOFF: BackoffOptions = { baseMs: 50, maxMs: 5_000 }
/** Consecutive failed commits after which the log says error, not warn: an outage, not a blip. */
const COMMIT_FAILURES_BEFORE_ERROR = 5

/** An accepted event with its seq, time and frame, waiting to be committed. */
export interface PendingEvent {
  evt: AcceptedEvent
  seq: number
  timeUs: number
  kind: EventKindCode
  frame: Uint8Array
  /** `frame` as one unmasked binary WebSocket message (header + frame, one buffer). */
  wire: Buffer
  resolve: (seq: number) => void
  reject: (err: Error) => void
}

export interface BatchCommitterOptions {
  storage: Storage
  eventLog: EventLog
  cursors: HostCursorTracker
  logger: Logger
  registry: Registry
  /** Events still queued (for the failure log lines). */
  queued: () => number
  /** True once the sequencer gave up on its queue (stop timed out): retries end. */
  abandoned: () => boolean
}

export class BatchCommitter {
  private readonly storage: Storage
  private readonly eventLog: EventLog
  private readonly cursors: HostCursorTracker
  private readonly logger: Logger
  private readonly queued: () => number
  private readonly abandoned: () => boolean
  private consecutiveFailures = 0

  private readonly mCommitSeconds: Histogram
  private readonly mFailures: Counter
  private readonly mFailing: Gauge

  constructor(opts: BatchCommitterOptions) {
    this.storage = opts.storage
    this.eventLog = opts.eventLog
    this.cursors = opts.cursors
    this.logger = opts.logger
    this.queued = opts.queued
    this.abandoned = opts.abandoned
    const registers = [opts.registry]
    this.mCommitSeconds = new Histogram({
      name: 'relay_sequencer_commit_seconds',
      help: 'Time to commit one batch transaction',
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers,
    })
    this.mFailures = new Counter({
      name: 'relay_sequencer_commit_failures_total',
      help: 'Failed batch commits (each is retried)',
      registers,
    })
    this.mFailing = new Gauge({
      name: 'relay_sequencer_commit_consecutive_failures',
      help: 'Consecutive failed attempts of the current batch (0 when healthy)',
      registers,
    })
  }

  /** Commits `batch`, retrying until it is durable (true) or the sequencer abandoned its queue (false). */
  async commitWithRetry(batch: PendingEvent[]): Promise<boolean> {
    for (let attempt = 0; ; attempt++) {
      if (this.abandoned()) return false
      try {
        if (attempt > 0 && (await this.committedAlready(batch))) {
          // Running it again would fail on the event rows' keys, for good.
          this.logger.warn({ firstSeq: batch[0]?.seq, lastSeq: batch[batch.length - 1]?.seq, attempts: attempt }, 'sequencer commit had succeeded although it reported a failure; not run again')
        } else await this.commitBatch(batch)
        if (this.consecutiveFailures > 0) {
          this.logger.info({ attempts: attempt + 1, seq: batch[batch.length - 1]?.seq }, 'sequencer commit recovered')
        }
        this.consecutiveFailures = 0
        this.mFailing.set(0)
        return true
      } catch (err) {
        this.consecutiveFailures++
        this.mFailures.inc()
        this.mFailing.set(this.consecutiveFailures)
        const fields = {
          err,
          attempt: attempt + 1,
          firstSeq: batch[0]?.seq,
          lastSeq: batch[batch.length - 1]?.seq,
          queued: this.queued(),
        }
        if (this.consecutiveFailures >= COMMIT_FAILURES_BEFORE_ERROR) this.logger.error(fields, 'sequencer commit keeps failing; events are held, not lost')
        else this.logger.warn(fields, 'sequencer commit failed; retrying')
        await sleep(backoffCeiling(attempt + 1, COMMIT_RETRY_BACKOFF), undefined, { ref: false })
      }
    }
  }

  /** Whether an attempt that reported a failure had committed all the same (the high-water mark is written with the events). */
  private async committedAlready(batch: PendingEvent[]): Promise<boolean> {
    const last = batch[batch.length - 1]
    return last !== undefined && (await committedThrough(this.storage.db, SEQ_STATE_KEY)) >= last.seq
  }

  private async commitBatch(batch: PendingEvent[]): Promise<void> {
    const first = batch[0]
    const last = batch[batch.length - 1]
    if (first !== undefined && last !== undefined) await this.eventLog.ensurePartitions(first.seq, last.seq)
    for (const p of batch) {
      if (p.evt.ticket !== undefined) this.cursors.committing(p.evt.ticket)
    }
    const cursorWrites = this.cursors.pendingWrites()
    const rows: EventRow[] = batch.map((p) => ({
      seq: p.seq,
      accountId: p.evt.accountId,
      kind: p.kind,
      frame: p.frame,
      commitCid: p.evt.head?.commitCid ?? null,
      timeUs: p.timeUs,
    }))
    const heads = new Map<number, AccountHead>()
    for (const p of batch) if (p.evt.head !== undefined) heads.set(p.evt.accountId, p.evt.head)
    const statement = batchCommitStatement({
      events: rows,
      heads,
      cursors: cursorWrites,
      ...(last !== undefined ? { highWater: { key: SEQ_STATE_KEY, seq: last.seq } } : {}),
      collections: reduceCollectionDeltas(batch.map((p) => ({ accountId: p.evt.accountId, delta: p.evt.collections }))),
    })
    const started = performance.now()
    // Prepared once per connection: the text depends only on which parts the batch has.
    if (statement !== undefined) await this.storage.executeRepeated(statement)
    this.mCommitSeconds.observe((performance.now() - started) / 1000)
    this.cursors.persisted(cursorWrites)
  }
}
