/**
 * BENCH BASELINE ONLY: the batch statement as it was before binary array parameters (one
 * `values` row of six parameters per event), kept so bench/batch-statement.bench.ts can measure
 * the two side by side (events, heads, cursors; the high-water part is shared). The relay uses
 * src/sequencer/batch-statement.ts.
 *
 * The one SQL statement that commits a sequencer batch: the events, the new
 * account heads, the host cursors and the seq high-water mark, as
 * data-modifying CTEs. One statement is one implicit transaction and one
 * round trip; a busy relay answers each round trip only when its event loop
 * comes round, so a six-statement transaction made batch commits take tens of
 * ms under load.
 *
 * The text is built by hand rather than with Kysely's `sql` templates: for a
 * batch of hundreds of events the template's node tree (built, frozen and
 * compiled per value) cost more main-thread time than the database call.
 */
import { CompiledQuery } from 'kysely'
import { highWaterPart, type BatchWrites } from '../../src/sequencer/batch-statement.js'

/** The statement for `w`, or undefined when there is nothing to write. */
export function valuesBatchCommitStatement(w: BatchWrites): CompiledQuery | undefined {
  const params: unknown[] = []
  const p = (value: unknown, type: string): string => {
    params.push(value)
    return `$${params.length}::${type}`
  }
  const parts: string[] = []
  if (w.events.length > 0) {
    const rows = w.events.map((e) => `(${p(e.seq, 'int8')}, ${p(e.accountId, 'int8')}, ${p(e.kind, 'int2')}, ${p(e.frame, 'bytea')}, ${p(e.commitCid, 'bytea')}, ${p(e.timeUs, 'int8')})`)
    parts.push(`ev as (insert into event (seq, account_id, kind, frame, commit_cid, time_us) values ${rows.join(', ')})`)
  }
  if (w.heads.size > 0) {
    const rows: string[] = []
    for (const [accountId, h] of w.heads) rows.push(`(${p(accountId, 'int8')}, ${p(h.rev, 'text')}, ${p(h.commitCid, 'bytea')}, ${p(h.dataCid, 'bytea')})`)
    // Rows for accounts deleted meanwhile are skipped rather than failing the whole batch on the foreign key.
    parts.push(
      `heads as (insert into account_head (account_id, rev, commit_cid, data_cid)` +
        ` select v.account_id, v.rev, v.commit_cid, v.data_cid from (values ${rows.join(', ')}) as v (account_id, rev, commit_cid, data_cid)` +
        ` where exists (select 1 from account a where a.id = v.account_id)` +
        ` on conflict (account_id) do update set rev = excluded.rev, commit_cid = excluded.commit_cid, data_cid = excluded.data_cid)`,
    )
  }
  if (w.cursors.size > 0) {
    const rows: string[] = []
    for (const [hostId, cursor] of w.cursors) rows.push(`(${p(hostId, 'int8')}, ${p(cursor, 'int8')})`)
    parts.push(`cursors as (update host set cursor = v.cursor from (values ${rows.join(', ')}) as v (id, cursor) where host.id = v.id)`)
  }
  if (w.highWater !== undefined) parts.push(highWaterPart(w.highWater, p))
  // The bench writes no collection changes: that part is the relay's own (already arrays) and not compared.
  if (w.collections !== undefined) throw new Error('the values baseline does not write collection changes')
  if (parts.length === 0) return undefined
  return CompiledQuery.raw(`with ${parts.join(', ')} select 1`, params)
}
