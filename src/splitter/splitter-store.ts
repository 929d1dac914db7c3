/**
 * The splitter log's writes to the database other than the batch commit: the `relay_state` keys
 * it keeps, partitions for the seqs it stores (an upstream's seqs may have gaps), and the rewind
 * when the upstream's seq space changes (docs/architecture.md §8).
 */
import { sql } from 'kysely'
import type { Logger } from 'pino'
import type { EventLog } from '../sequencer/event-log.js'
import type { Storage } from '../storage/db.js'

/** `relay_state`: the newest stored upstream seq (absent: nothing stored, connect live). */
export const SPLITTER_SEQ_KEY = 'splitter_seq'
/** `relay_state`: the upstream URL whose seq space the stored log is in. */
export const SPLITTER_UPSTREAM_KEY = 'splitter_upstream'

/**
 * Partitions for the given ascending seqs, not the whole range between them: a gap of many
 * partitions must not create them all (ensurePartitions fills from its first seq to its last).
 */
export async function ensurePartitionsFor(eventLog: EventLog, seqs: readonly number[]): Promise<void> {
  const size = eventLog.partitionSize
  let i = 0
  while (i < seqs.length) {
    const from = seqs[i] as number
    const partition = Math.floor(from / size)
    let to = from
    while (i < seqs.length && Math.floor((seqs[i] as number) / size) === partition) to = seqs[i++] as number
    await eventLog.ensurePartitions(from, to)
  }
}

/**
 * Deletes events at or above `fromSeq` and records `upstream` as the log's seq space, in one
 * transaction. Returns the newest seq kept (0: none).
 */
export async function rewindStoredLog(storage: Storage, eventLog: EventLog, logger: Logger, fromSeq: number, upstream: string): Promise<number> {
  // Partitions wholly at or above fromSeq are dropped rather than emptied row by row; and
  // ensurePartitions only adds above the highest partition, so one that stayed above the new
  // seqs would leave them without a partition.
  const doomed = (await eventLog.partitions()).filter((p) => p.start >= fromSeq)
  const newest = await storage.db.transaction().execute(async (tx) => {
    for (const p of doomed) await sql.raw(`DROP TABLE IF EXISTS ${p.name}`).execute(tx)
    await tx.deleteFrom('event').where('seq', '>=', fromSeq).execute()
    const row = await tx.selectFrom('event').select(sql<string | null>`max(seq)`.as('max')).executeTakeFirst()
    const kept = row?.max === null || row?.max === undefined ? 0 : Number(row.max)
    const upsert = (key: string, value: unknown) =>
      tx
        .insertInto('relay_state')
        .values({ key, value: JSON.stringify(value), updated_at: new Date() })
        .onConflict((oc) => oc.column('key').doUpdateSet({ value: JSON.stringify(value), updated_at: new Date() }))
        .execute()
    await upsert(SPLITTER_UPSTREAM_KEY, upstream)
    if (kept > 0) await upsert(SPLITTER_SEQ_KEY, kept)
    else await tx.deleteFrom('relay_state').where('key', '=', SPLITTER_SEQ_KEY).execute()
    return kept
  })
  eventLog.forgetPartitions()
  if (doomed.length > 0) logger.info({ dropped: doomed.map((p) => p.name) }, 'splitter log partitions dropped for the new seq space')
  return newest
}
