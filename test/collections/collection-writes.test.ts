/**
 * The index's share of a sequencer batch: reduced to one net change per
 * (account, collection), then written by the batch's one statement on
 * Postgres and PGlite.
 */
import { sql } from 'kysely'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { batchCommitStatement } from '../../src/sequencer/batch-statement.js'
import { reduceCollectionDeltas } from '../../src/sequencer/collection-writes.js'
import { createTestDatabase, STORAGE_KINDS, type TestDatabase } from '../helpers/db.js'

describe('reduceCollectionDeltas', () => {
  it('keeps the last change per (account, collection), in batch order', () => {
    const w = reduceCollectionDeltas([
      { accountId: 1, delta: { gained: ['a.b.c'] } },
      { accountId: 1, delta: { emptied: ['a.b.c'] } },
      { accountId: 2, delta: { emptied: ['a.b.c'] } },
      { accountId: 2, delta: { gained: ['a.b.c', 'a.b.d'] } },
      { accountId: 3, delta: undefined },
    ])
    expect(w.remove).toEqual({ collections: ['a.b.c'], accountIds: [1] })
    expect(w.insert).toEqual({ collections: ['a.b.c', 'a.b.d'], accountIds: [2, 2] })
    expect(w.removeAccounts).toEqual([])
    expect(w.recheck).toEqual([])
  })

  it('an account deleted in the batch loses every pair and nothing else of it is written', () => {
    const w = reduceCollectionDeltas([
      { accountId: 1, delta: { gained: ['a.b.c'] } },
      { accountId: 1, delta: { recheck: true } },
      { accountId: 1, delta: { removeAll: true } },
      { accountId: 1, delta: { gained: ['a.b.d'] } },
      { accountId: 2, delta: { recheck: true } },
    ])
    expect(w.insert.accountIds).toEqual([])
    expect(w.removeAccounts).toEqual([1])
    expect(w.recheck).toEqual([2])
  })
})

for (const kind of STORAGE_KINDS) {
  describe(`the batch statement writes the index (${kind})`, () => {
    let t: TestDatabase
    beforeAll(async () => {
      t = await createTestDatabase(kind)
      await sql`insert into host (id, hostname, account_limit) values (1, 'pds.test', 10)`.execute(t.storage.db)
      await sql`insert into account (id, did, host_id) values (1, 'did:plc:one', 1), (2, 'did:plc:two', 1)`.execute(t.storage.db)
    })
    afterAll(async () => {
      await t.cleanup()
    })

    const pairs = async () =>
      (
        await sql<{ nsid: string; account_id: number }>`select c.nsid, r.account_id from repo_collection r join collection c on c.id = r.collection_id order by c.nsid, r.account_id`.execute(
          t.storage.db,
        )
      ).rows.map((r) => `${r.nsid}:${Number(r.account_id)}`)
    const run = async (deltas: Parameters<typeof reduceCollectionDeltas>[0]) => {
      const q = batchCommitStatement({ events: [], heads: new Map(), cursors: new Map(), collections: reduceCollectionDeltas(deltas) })
      if (q !== undefined) await t.storage.db.executeQuery(q)
    }

    it('adds if absent, removes, removes all of a deleted account, queues rechecks', async () => {
      await run([
        { accountId: 1, delta: { gained: ['a.b.c', 'a.b.d'] } },
        { accountId: 2, delta: { gained: ['a.b.c'] } },
      ])
      expect(await pairs()).toEqual(['a.b.c:1', 'a.b.c:2', 'a.b.d:1'])
      // Gaining a collection it already has is a no-op, not an error.
      await run([{ accountId: 1, delta: { gained: ['a.b.c'] } }, { accountId: 1, delta: { emptied: ['a.b.d'] } }])
      expect(await pairs()).toEqual(['a.b.c:1', 'a.b.c:2'])
      await run([{ accountId: 2, delta: { removeAll: true } }, { accountId: 1, delta: { recheck: true } }])
      expect(await pairs()).toEqual(['a.b.c:1'])
      const queued = await sql<{ account_id: number; reason: string }>`select account_id, reason from collection_backfill`.execute(t.storage.db)
      expect(queued.rows.map((r) => [Number(r.account_id), r.reason])).toEqual([[1, 'sync']])
      // Nothing to write: no statement at all.
      expect(batchCommitStatement({ events: [], heads: new Map(), cursors: new Map(), collections: reduceCollectionDeltas([]) })).toBeUndefined()
      // Names are stored once, and gaining known collections again takes no new ids from the sequence.
      await run([{ accountId: 1, delta: { gained: ['a.b.c', 'a.b.d'] } }, { accountId: 2, delta: { gained: ['a.b.c'] } }])
      const names = await sql<{ nsid: string; id: number }>`select nsid, id from collection order by id`.execute(t.storage.db)
      expect(names.rows.map((r) => [r.nsid, Number(r.id)])).toEqual([['a.b.c', 1], ['a.b.d', 2]])
      const next = await sql<{ id: number }>`select nextval('collection_id_seq') as id`.execute(t.storage.db)
      expect(Number(next.rows[0]!.id)).toBe(3)
    })
  })
}
