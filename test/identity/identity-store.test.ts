/**
 * The identity table's writer: saves made while a write is in flight share
 * the next statement (a burst of new accounts), every caller's promise
 * resolves only once its row is stored, and a newer resolution always wins.
 */
import { afterEach, describe, expect, it } from 'vitest'
import { IdentityStore } from '../../src/identity/cache.js'
import type { IdentityResult } from '../../src/identity/did-doc.js'
import type { Storage } from '../../src/storage/db.js'
import { createTestDatabase, STORAGE_KINDS, type TestDatabase } from '../helpers/db.js'

/** Counts the identity upserts sent (each one statement, whatever its number of rows). */
function countingUpserts(storage: Storage): { storage: Storage; upserts: () => number } {
  let upserts = 0
  const counted: Storage = {
    ...storage,
    executeRepeated: (query) => {
      if (/^insert into identity /.test(query.sql)) upserts++
      return storage.executeRepeated(query)
    },
  }
  return { storage: counted, upserts: () => upserts }
}

function failed(did: string, error: string): IdentityResult {
  return { status: 'failed', did, error }
}

let db: TestDatabase | undefined
afterEach(async () => {
  await db?.cleanup()
  db = undefined
})

describe.each(STORAGE_KINDS)('IdentityStore.save (%s)', (kind) => {
  it('writes 200 concurrent saves in a few statements, each resolved once stored', async () => {
    db = await createTestDatabase(kind)
    const counting = countingUpserts(db.storage)
    const store = new IdentityStore(counting.storage)
    const dids = Array.from({ length: 200 }, (_, i) => `did:plc:store${String(i).padStart(19, '0')}`)
    const now = Date.now()
    await Promise.all(dids.map((did, i) => store.save(failed(did, `e${i}`), now)))

    expect(counting.upserts()).toBeGreaterThanOrEqual(1)
    expect(counting.upserts()).toBeLessThanOrEqual(3)
    const rows = await db.storage.db.selectFrom('identity').select(['did', 'error']).execute()
    expect(rows).toHaveLength(200)
    for (const did of dids) expect((await store.load(did))?.result).toMatchObject({ status: 'failed', did })
  })

  it('keeps the newest resolution of a DID saved twice at once, in either order', async () => {
    db = await createTestDatabase(kind)
    const store = new IdentityStore(db.storage)
    const did = 'did:plc:twicetwicetwicetwicetwic'
    const t = Date.now()
    // The first save goes out alone; the next two queue behind it, older after newer.
    await Promise.all([store.save(failed(did, 'first'), t), store.save(failed(did, 'newest'), t + 2), store.save(failed(did, 'older'), t + 1)])
    expect((await store.load(did))?.result).toMatchObject({ error: 'newest' })
    await store.save(failed(did, 'stale'), t)
    expect((await store.load(did))?.result).toMatchObject({ error: 'newest' })
  })

  it('rejects every waiter of a failed write and keeps working afterwards', async () => {
    db = await createTestDatabase(kind)
    const store = new IdentityStore(db.storage)
    const did = 'did:plc:brokenbrokenbrokenbroken'
    await db.storage.db.schema.alterTable('identity').renameTo('identity_away').execute()
    const t = Date.now()
    const saves = [store.save(failed(did, 'lost'), t), store.save(failed(`${did}2`, 'lost'), t)]
    for (const s of saves) await expect(s).rejects.toThrow(/identity/)
    await db.storage.db.schema.alterTable('identity_away').renameTo('identity').execute()
    await store.save(failed(did, 'nul\u0000 stripped'), t)
    expect((await store.load(did))?.result).toMatchObject({ error: 'nul stripped' })
  })
})
