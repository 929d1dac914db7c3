/**
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
import { CompiledQuery, type Kysely } from 'kysely'
import type { AccountHead, Database } from '../storage/types.js'
import { byteaArray, int2Array, int8Array, textArray } from '../storage/binary-array.js'
import { isEmptyCollectionWrites, type CollectionWrites } from './collection-writes.js'
import type { EventRow } from './event-log.js'

export interface BatchWrites {
  events: readonly EventRow[]
  /** One head per account (a second upsert of the same key in one statement is an error). */
  heads: ReadonlyMap<number, AccountHead>
  /** Host id → cursor. */
  cursors: ReadonlyMap<number, number>
  /** The relay seq high-water mark (the batch's last seq), if it has events. */
  highWater?: { key: string; seq: number }
  /** The listReposByCollection index's net changes (collection-writes.ts); arrays, so 7 parameters at most. */
  collections?: CollectionWrites
}

/**
 * Largest batch in events. Each column travels as one binary array parameter, so Postgres's
 * parameter limit (65,535) no longer binds; what does is MAX_BATCH_BYTES.
 */
export const MAX_BATCH_EVENTS = 5_000

/**
 * Largest batch in frame bytes (default; at least one event whatever its size). All of a batch's
 * frames are one `bytea[]` value, and Postgres refuses a value (or a Bind message) over 1 GB: at
 * 500 events of up to 5 MB a batch could pass that and then fail on every retry, holding every host.
 */
export const MAX_BATCH_BYTES = 64 * 1024 * 1024

/** How many of `items` from the start (at most `maxEvents`) make one batch of at most `maxBytes` of frames, never fewer than one. */
export function batchLength<T>(items: readonly T[], maxEvents: number, maxBytes: number, frameBytes: (item: T) => number): number {
  let n = 0
  let bytes = 0
  while (n < items.length && n < maxEvents) {
    bytes += frameBytes(items[n]!)
    if (n > 0 && bytes > maxBytes) break
    n++
  }
  return n
}

/**
 * The statement for `w`, or undefined when there is nothing to write.
 *
 * Every row set is `unnest` over one binary array per column (storage/binary-array.ts): the text
 * depends only on which parts are present, not on the batch size, and each column is one copy.
 */
export function batchCommitStatement(w: BatchWrites): CompiledQuery | undefined {
  const params: unknown[] = []
  const p = (value: unknown, type: string): string => {
    params.push(value)
    return `$${params.length}::${type}`
  }
  const parts: string[] = []
  if (w.events.length > 0) {
    const n = w.events.length
    const seqs = new Array<number>(n)
    const accounts = new Array<number>(n)
    const kinds = new Array<number>(n)
    const frames = new Array<Uint8Array>(n)
    const cids = new Array<Uint8Array | null>(n)
    const times = new Array<number>(n)
    for (let i = 0; i < n; i++) {
      const e = w.events[i]!
      seqs[i] = e.seq
      accounts[i] = e.accountId
      kinds[i] = e.kind
      frames[i] = e.frame
      cids[i] = e.commitCid
      times[i] = e.timeUs
    }
    parts.push(
      `ev as (insert into event (seq, account_id, kind, frame, commit_cid, time_us) select * from unnest(` +
        `${p(int8Array(seqs), 'int8[]')}, ${p(int8Array(accounts), 'int8[]')}, ${p(int2Array(kinds), 'int2[]')}, ` +
        `${p(byteaArray(frames), 'bytea[]')}, ${p(byteaArray(cids), 'bytea[]')}, ${p(int8Array(times), 'int8[]')}))`,
    )
  }
  if (w.heads.size > 0) {
    const ids: number[] = []
    const revs: string[] = []
    const commitCids: Uint8Array[] = []
    const dataCids: Uint8Array[] = []
    for (const [accountId, h] of w.heads) {
      ids.push(accountId)
      revs.push(h.rev)
      commitCids.push(h.commitCid)
      dataCids.push(h.dataCid)
    }
    // Rows for accounts deleted meanwhile are skipped rather than failing the whole batch on the foreign key.
    parts.push(
      `heads as (insert into account_head (account_id, rev, commit_cid, data_cid)` +
        ` select v.account_id, v.rev, v.commit_cid, v.data_cid from unnest(${p(int8Array(ids), 'int8[]')}, ${p(textArray(revs), 'text[]')},` +
        ` ${p(byteaArray(commitCids), 'bytea[]')}, ${p(byteaArray(dataCids), 'bytea[]')}) as v (account_id, rev, commit_cid, data_cid)` +
        ` where exists (select 1 from account a where a.id = v.account_id)` +
        ` on conflict (account_id) do update set rev = excluded.rev, commit_cid = excluded.commit_cid, data_cid = excluded.data_cid)`,
    )
  }
  if (w.cursors.size > 0) {
    const hostIds = [...w.cursors.keys()]
    const cursors = [...w.cursors.values()]
    parts.push(
      `cursors as (update host set cursor = v.cursor from unnest(${p(int8Array(hostIds), 'int8[]')}, ${p(int8Array(cursors), 'int8[]')}) as v (id, cursor)` +
        ` where host.id = v.id)`,
    )
  }
  if (w.highWater !== undefined) parts.push(highWaterPart(w.highWater, p))
  if (w.collections !== undefined && !isEmptyCollectionWrites(w.collections)) parts.push(...collectionParts(w.collections, p))
  if (parts.length === 0) return undefined
  return CompiledQuery.raw(`with ${parts.join(', ')} select 1`, params)
}

/**
 * The seq a high-water key was last set to (0 when never). The batch statement sets it in the
 * same transaction as the batch's events, and batches commit one at a time in seq order, so
 * `committedThrough(key) >= last seq of a batch` says that batch is durable: what a retry asks
 * after a failure that may have come after the commit (a connection or the writer thread lost
 * between sending the statement and reading its answer).
 */
export async function committedThrough(db: Kysely<Database>, key: string): Promise<number> {
  const row = await db.selectFrom('relay_state').select('value').where('key', '=', key).executeTakeFirst()
  return typeof row?.value === 'number' ? row.value : Number(row?.value ?? 0)
}

/** The seq high-water mark's CTE (`p` binds a parameter and returns its placeholder). */
export function highWaterPart(highWater: { key: string; seq: number }, p: (value: unknown, type: string) => string): string {
  return (
    `high_water as (insert into relay_state (key, value, updated_at) values (${p(highWater.key, 'text')}, ${p(JSON.stringify(highWater.seq), 'jsonb')}, now())` +
    ` on conflict (key) do update set value = excluded.value, updated_at = excluded.updated_at)`
  )
}

/**
 * The index's CTEs: its insert and delete sets are disjoint (reduceCollectionDeltas), so their order does not matter.
 * Binary arrays like every other column: a JS array would be turned into array-literal text by pg.
 */
function collectionParts(c: CollectionWrites, p: (value: unknown, type: string) => string): string[] {
  const parts: string[] = []
  if (c.insert.accountIds.length > 0) {
    const names = p(textArray(c.insert.collections), 'text[]')
    // Only names not stored yet are inserted: an insert that conflicts still takes a value from the
    // int4 sequence, and every batch of creates would burn some.
    parts.push(
      `coll_names as (insert into collection (nsid) select distinct v.nsid from unnest(${names}) as v (nsid)` +
        ` where not exists (select 1 from collection c where c.nsid = v.nsid) on conflict (nsid) do nothing returning id, nsid)`,
      `coll_add as (insert into repo_collection (collection_id, account_id)` +
        ` select coalesce(n.id, c.id), v.account_id from unnest(${names}, ${p(int8Array(c.insert.accountIds), 'int8[]')}) as v (nsid, account_id)` +
        ` left join coll_names n on n.nsid = v.nsid left join collection c on c.nsid = v.nsid on conflict do nothing)`,
    )
  }
  if (c.remove.accountIds.length > 0) {
    parts.push(
      `coll_remove as (delete from repo_collection r using unnest(${p(textArray(c.remove.collections), 'text[]')}, ${p(int8Array(c.remove.accountIds), 'int8[]')}) as d (nsid, account_id), collection c` +
        ` where c.nsid = d.nsid and r.collection_id = c.id and r.account_id = d.account_id)`,
    )
  }
  if (c.removeAccounts.length > 0) {
    parts.push(`coll_remove_accounts as (delete from repo_collection where account_id = any(${p(int8Array(c.removeAccounts), 'int8[]')}))`)
  }
  if (c.recheck.length > 0) {
    parts.push(
      `coll_recheck as (insert into collection_backfill (account_id, reason) select unnest(${p(int8Array(c.recheck), 'int8[]')}), 'sync'` +
        ` on conflict (account_id) do update set reason = 'sync', due_at = now(), attempts = 0)`,
    )
  }
  return parts
}
