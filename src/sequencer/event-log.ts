/**
 * The durable outbound event log: the `event` table, range-partitioned by seq.
 *
 * Partitions (`event_p<start>`, [start, start + partitionSize)) are created
 * ahead of the seq the sequencer is about to write. Retention drops whole
 * partitions whose newest event is older than the replay window; the
 * partition being written (and any above it) is never dropped.
 */
import { sql, type Kysely } from 'kysely'
import type { Logger } from 'pino'
import { Counter, Gauge, type Registry } from 'prom-client'
import { configDefault } from '../config.js'
import type { Storage } from '../storage/db.js'
import type { Database, EventKindCode } from '../storage/types.js'

/** RELAY_EVENT_PARTITION_SIZE and RELAY_REPLAY_WINDOW: their defaults live in config.ts. */
export const DEFAULT_PARTITION_SIZE = configDefault('eventPartitionSize')
export const DEFAULT_REPLAY_WINDOW_MS = configDefault('replayWindowMs')
const DEFAULT_RETENTION_INTERVAL_MS = 60_000
/** How long a retention DROP may wait for its lock (inserts queue behind it meanwhile). */
const DROP_LOCK_TIMEOUT_MS = 250
/** Postgres lock_not_available: lock_timeout expired. */
const LOCK_NOT_AVAILABLE = '55P03'

export interface LoggedEvent {
  seq: number
  accountId: number
  kind: EventKindCode
  /** The complete outbound frame (header + body with the relay seq). */
  frame: Uint8Array
}

export interface EventRow {
  seq: number
  accountId: number
  kind: EventKindCode
  frame: Uint8Array
  commitCid: Uint8Array | null
  /** Unix µs assigned with the seq (strictly increasing with it). */
  timeUs: number
}

export interface PartitionInfo {
  name: string
  start: number
  end: number
}

export interface EventLogOptions {
  storage: Storage
  partitionSize?: number
  replayWindowMs?: number
  /** How often retention runs (ms); 0 disables the timer (call enforceRetention yourself). */
  retentionIntervalMs?: number
  /** The newest committed seq, so retention never drops the partition being written. */
  currentSeq: () => number
  logger: Logger
  registry: Registry
}

export class EventLogError extends Error {
  constructor(
    readonly reason: 'partition-create-failed' | 'bad-partition-bound',
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options)
    this.name = 'EventLogError'
  }
}

const BOUND = /FROM \('?(-?\d+)'?\) TO \('?(-?\d+)'?\)/

export class EventLog {
  readonly partitionSize: number
  readonly replayWindowMs: number
  private readonly db: Kysely<Database>
  private readonly logger: Logger
  private readonly currentSeq: () => number
  private readonly retentionIntervalMs: number
  /** Upper bound (exclusive) of the highest partition known to exist. */
  private coveredUpTo = -1
  private partitionsLoaded = false
  private timer: NodeJS.Timeout | undefined
  private retentionRunning: Promise<number> | undefined
  private readonly partitionsGauge: Gauge
  private readonly droppedCounter: Counter
  private readonly removedCounter: Counter
  private readonly postponedCounter: Counter

  constructor(opts: EventLogOptions) {
    this.db = opts.storage.db
    this.partitionSize = opts.partitionSize ?? DEFAULT_PARTITION_SIZE
    if (!Number.isSafeInteger(this.partitionSize) || this.partitionSize < 1) {
      throw new RangeError(`partitionSize must be a positive integer, got ${this.partitionSize}`)
    }
    this.replayWindowMs = opts.replayWindowMs ?? DEFAULT_REPLAY_WINDOW_MS
    this.retentionIntervalMs = opts.retentionIntervalMs ?? DEFAULT_RETENTION_INTERVAL_MS
    this.currentSeq = opts.currentSeq
    this.logger = opts.logger
    this.partitionsGauge = new Gauge({
      name: 'relay_event_log_partitions',
      help: 'Partitions of the event table',
      registers: [opts.registry],
    })
    this.droppedCounter = new Counter({
      name: 'relay_event_log_partitions_dropped_total',
      help: 'Event-log partitions dropped by retention',
      registers: [opts.registry],
    })
    this.removedCounter = new Counter({
      name: 'relay_event_log_events_removed_total',
      help: 'Events removed from the log for takedowns',
      registers: [opts.registry],
    })
    this.postponedCounter = new Counter({
      name: 'relay_event_log_partition_drops_postponed_total',
      help: 'Retention drops that gave way to a long transaction on the event table (retried at the next pass)',
      registers: [opts.registry],
    })
  }

  /** Starts the retention timer. */
  start(): void {
    if (this.retentionIntervalMs > 0 && this.timer === undefined) {
      this.timer = setInterval(() => {
        this.enforceRetention().catch((err) => this.logger.error({ err }, 'event log retention failed'))
      }, this.retentionIntervalMs)
      this.timer.unref()
    }
  }

  async stop(): Promise<void> {
    if (this.timer !== undefined) clearInterval(this.timer)
    this.timer = undefined
    // Only waiting for a running pass to finish: its failure goes to whoever started it (the timer logs it).
    await this.retentionRunning?.catch(() => undefined)
  }

  /** Existing partitions of `event`, lowest first. */
  async partitions(): Promise<PartitionInfo[]> {
    const rows = await sql<{ name: string; bound: string }>`
      select c.relname as name, pg_get_expr(c.relpartbound, c.oid) as bound
      from pg_inherits i join pg_class c on c.oid = i.inhrelid
      where i.inhparent = 'event'::regclass`.execute(this.db)
    const parts = rows.rows.map((r) => {
      const m = BOUND.exec(r.bound)
      if (m === null) throw new EventLogError('bad-partition-bound', `cannot parse bound of ${r.name}: ${r.bound}`)
      return { name: r.name, start: Number(m[1]), end: Number(m[2]) }
    })
    parts.sort((a, b) => a.start - b.start)
    this.partitionsGauge.set(parts.length)
    return parts
  }

  /**
   * Makes sure partitions cover every seq in [fromSeq, toSeq], plus half a
   * partition ahead, so inserts never hit a missing partition. Cheap when already covered.
   */
  async ensurePartitions(fromSeq: number, toSeq: number = fromSeq): Promise<void> {
    const target = toSeq + Math.ceil(this.partitionSize / 2)
    if (this.partitionsLoaded && target < this.coveredUpTo) return
    const existing = await this.partitions()
    this.partitionsLoaded = true
    const last = existing[existing.length - 1]
    // Seqs below fromSeq are never written again: a gap below it (e.g. a raised
    // initial seq) is left without partitions instead of being filled.
    let next = Math.max(last?.end ?? Number.NEGATIVE_INFINITY, this.alignDown(fromSeq))
    while (next <= target) {
      const end = this.alignDown(next) + this.partitionSize
      await this.createPartition(next, end)
      next = end
    }
    this.coveredUpTo = Math.max(next, last?.end ?? -1)
  }

  /**
   * Forgets which partitions are known to exist, so the next ensurePartitions reads them again:
   * for a caller that dropped partitions itself (a splitter whose upstream's seqs went backwards).
   */
  forgetPartitions(): void {
    this.partitionsLoaded = false
    this.coveredUpTo = -1
  }

  private alignDown(seq: number): number {
    return Math.floor(seq / this.partitionSize) * this.partitionSize
  }

  /**
   * Created on its own, then attached: `CREATE TABLE … PARTITION OF` takes an exclusive lock on `event`, so behind a
   * long reader (pg_dump) it waited and every insert queued behind it; ATTACH PARTITION takes a lock that readers and
   * inserts do not conflict with (and adds the parent's indexes to the empty table). A table left unattached by a
   * crash between the two is attached by the next call.
   */
  private async createPartition(start: number, end: number): Promise<void> {
    const name = `event_p${start}`
    try {
      await sql.raw(`CREATE TABLE IF NOT EXISTS ${name} (LIKE event INCLUDING DEFAULTS INCLUDING CONSTRAINTS)`).execute(this.db)
      const { rows } = await sql<{ attached: boolean }>`select exists (select 1 from pg_inherits where inhrelid = ${name}::regclass) as attached`.execute(this.db)
      if (!rows[0]?.attached) await sql.raw(`ALTER TABLE event ATTACH PARTITION ${name} FOR VALUES FROM (${start}) TO (${end})`).execute(this.db)
      this.logger.info({ partition: name, start, end }, 'event log partition created')
    } catch (err) {
      throw new EventLogError('partition-create-failed', `cannot create partition ${name}: ${(err as Error).message}`, {
        cause: err,
      })
    }
  }

  /** Events with seq > afterSeq, in seq order, at most `limit`. */
  async readRange(afterSeq: number, limit: number): Promise<LoggedEvent[]> {
    const rows = await this.db
      .selectFrom('event')
      .select(['seq', 'account_id', 'kind', 'frame'])
      .where('seq', '>', afterSeq)
      .orderBy('seq')
      .limit(limit)
      .execute()
    return rows.map((r) => ({ seq: r.seq, accountId: r.account_id, kind: r.kind, frame: r.frame }))
  }

  /** The oldest retained seq, or undefined when the log is empty. */
  async oldestSeq(): Promise<number | undefined> {
    const row = await this.db.selectFrom('event').select('seq').orderBy('seq').limit(1).executeTakeFirst()
    return row?.seq
  }

  /** The newest stored seq, or undefined when the log is empty. */
  async newestSeq(): Promise<number | undefined> {
    const row = await this.db.selectFrom('event').select('seq').orderBy('seq', 'desc').limit(1).executeTakeFirst()
    return row?.seq
  }

  /** Removes every stored event of an account (takedown). Returns how many were removed. */
  async removeAccountEvents(accountId: number): Promise<number> {
    const res = await this.db.deleteFrom('event').where('account_id', '=', accountId).executeTakeFirst()
    const n = Number(res.numDeletedRows)
    this.removedCounter.inc(n)
    this.logger.info({ accountId, removed: n }, 'removed account events from the log')
    return n
  }

  /**
   * Drops every partition entirely below the one holding the current seq whose
   * newest event is older than the replay window (or that is empty). Returns how many were dropped.
   */
  enforceRetention(): Promise<number> {
    if (this.retentionRunning !== undefined) return this.retentionRunning
    const run = this.runRetention().finally(() => {
      this.retentionRunning = undefined
    })
    this.retentionRunning = run
    return run
  }

  private async runRetention(): Promise<number> {
    const current = this.currentSeq()
    const parts = await this.partitions()
    let dropped = 0
    const windowSecs = this.replayWindowMs / 1000
    for (const p of parts) {
      // The partition being written (and any above it) is never dropped.
      if (p.end > current) break
      const res = await sql<{ expired: boolean | null }>`
        select (select received_at from ${sql.table(p.name)} order by seq desc limit 1)
               < now() - make_interval(secs => ${windowSecs}) as expired`.execute(this.db)
      const expired = res.rows[0]?.expired
      // Partitions are dropped oldest first; stop at the first one still inside the window
      // so the retained log stays one contiguous range.
      if (expired === false) break
      if (!(await this.dropPartition(p))) break
      dropped++
      this.droppedCounter.inc()
      this.logger.info({ partition: p.name, start: p.start, end: p.end, empty: expired === null }, 'event log partition dropped')
    }
    if (dropped > 0) await this.partitions()
    return dropped
  }

  /**
   * Drops one partition, waiting at most DROP_LOCK_TIMEOUT_MS for its lock. The DROP needs an exclusive lock on
   * `event` itself: queued behind a long reader (a backup, a long transaction) it would hold up every insert behind
   * it, stalling ingest for as long as that reader runs. So it gives way instead; the next pass tries again.
   * False when postponed.
   */
  private async dropPartition(p: PartitionInfo): Promise<boolean> {
    try {
      await this.db.transaction().execute(async (trx) => {
        await sql.raw(`SET LOCAL lock_timeout = ${DROP_LOCK_TIMEOUT_MS}`).execute(trx)
        await sql.raw(`DROP TABLE IF EXISTS ${p.name}`).execute(trx)
      })
      return true
    } catch (err) {
      if ((err as { code?: string }).code !== LOCK_NOT_AVAILABLE) throw err
      this.postponedCounter.inc()
      this.logger.warn(
        { partition: p.name, start: p.start, end: p.end, lockTimeoutMs: DROP_LOCK_TIMEOUT_MS },
        'event log partition drop postponed: the event table is in use by a long transaction (a backup?); retrying at the next pass',
      )
      return false
    }
  }
}
