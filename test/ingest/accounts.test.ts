/**
 * AccountStore.create under concurrency: the host's account limit and count
 * stay exact when many new accounts of one host arrive at once (a newly
 * crawled host), and a DID created twice at once yields one account.
 */
import { afterEach, describe, expect, it } from 'vitest'
import { AccountStore } from '../../src/ingest/accounts.js'
import { createTestDatabase, STORAGE_KINDS, type TestDatabase } from '../helpers/db.js'

let db: TestDatabase | undefined

afterEach(async () => {
  await db?.cleanup()
  db = undefined
})

async function addHost(d: TestDatabase, hostname: string, accountLimit: number): Promise<number> {
  const row = await d.storage.db
    .insertInto('host')
    .values({ hostname, ssl: false, account_limit: accountLimit, lenient: null, last_error: null, last_error_at: null })
    .returning(['id'])
    .executeTakeFirstOrThrow()
  return row.id
}

describe.each(STORAGE_KINDS)('AccountStore.create (%s)', (kind) => {
  it('keeps the account limit and count exact with 40 creations at once', async () => {
    db = await createTestDatabase(kind)
    const hostId = await addHost(db, 'pds.example.test', 15)
    const store = new AccountStore({ storage: db.storage })
    const dids = Array.from({ length: 40 }, (_, i) => `did:plc:concurrent${String(i).padStart(13, '0')}`)
    const created = await Promise.all(dids.map((did) => store.create(did, hostId)))

    expect(created.filter((a) => a.localStatus === 'active')).toHaveLength(15)
    expect(created.filter((a) => a.localStatus === 'throttled')).toHaveLength(25)
    expect(new Set(created.map((a) => a.id)).size).toBe(40)
    const host = await db.storage.db.selectFrom('host').select(['account_count']).where('id', '=', hostId).executeTakeFirstOrThrow()
    expect(host.account_count).toBe(40)
    const rows = await db.storage.db.selectFrom('account').select(['did', 'local_status', 'host_id']).execute()
    expect(rows).toHaveLength(40)
    expect(rows.every((r) => r.host_id === hostId)).toBe(true)
  }, 180_000)

  it('creates a DID raced by two callers once and counts it once', async () => {
    db = await createTestDatabase(kind)
    const hostId = await addHost(db, 'pds.example.test', 10)
    const a = new AccountStore({ storage: db.storage })
    const b = new AccountStore({ storage: db.storage })
    const did = 'did:plc:raceraceraceraceraceracer'
    const [x, y] = await Promise.all([a.create(did, hostId), b.create(did, hostId)])
    expect(x.id).toBe(y.id)
    const host = await db.storage.db.selectFrom('host').select(['account_count']).where('id', '=', hostId).executeTakeFirstOrThrow()
    expect(host.account_count).toBe(1)
  }, 180_000)

  it('refuses to create an account on a host that does not exist', async () => {
    db = await createTestDatabase(kind)
    const store = new AccountStore({ storage: db.storage })
    await expect(store.create('did:plc:nohostnohostnohostnohost', 999)).rejects.toThrow(/host 999 does not exist/)
    expect(await db.storage.db.selectFrom('account').select('id').execute()).toHaveLength(0)
  }, 180_000)
})
