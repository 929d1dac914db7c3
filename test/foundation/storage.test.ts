import { sql } from 'kysely'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { loadMigrations, migrate, parseMigrations, SchemaTooNewError, currentSchemaVersion } from '../../src/storage/migrate.js'
import { cidForCbor } from '../../src/atproto/cid.js'
import { createTestDatabase, STORAGE_KINDS, type TestDatabase } from '../helpers/db.js'

describe('schema.sql migrations', () => {
  it('splits into consecutive numbered sections', () => {
    const migrations = loadMigrations()
    expect(migrations.length).toBeGreaterThan(0)
    migrations.forEach((m, i) => expect(m.version).toBe(i + 1))
    expect(() => parseMigrations('-- migrate:2\nselect 1;')).toThrow(/out of order/)
  })
})

describe.each(STORAGE_KINDS)('storage on %s', (kind) => {
  let t: TestDatabase

  beforeAll(async () => {
    t = await createTestDatabase(kind, { migrate: false })
  })
  afterAll(async () => {
    await t?.cleanup()
  })

  it('applies migrations once; a second run is a no-op', async () => {
    const first = await migrate(t.storage)
    expect(first).toEqual(loadMigrations().map((m) => m.version))
    expect(await migrate(t.storage)).toEqual([])
    expect(await currentSchemaVersion(t.storage)).toBe(first.length)
  })

  it('refuses a database newer than the code', async () => {
    const version = await currentSchemaVersion(t.storage)
    await sql`insert into schema_version (version) values (${version + 1})`.execute(t.storage.db)
    await expect(migrate(t.storage)).rejects.toBeInstanceOf(SchemaTooNewError)
    await expect(migrate(t.storage)).rejects.toThrow(/newer than this relay supports/)
    await sql`delete from schema_version where version = ${version + 1}`.execute(t.storage.db)
    expect(await migrate(t.storage)).toEqual([])
  })

  it('reads and writes every table', async () => {
    const { db } = t.storage
    const host = await db
      .insertInto('host')
      .values({ hostname: 'pds.example.com', account_limit: 100 })
      .returningAll()
      .executeTakeFirstOrThrow()
    expect(host).toMatchObject({ hostname: 'pds.example.com', status: 'active', cursor: 0, ssl: true, account_count: 0, lenient: null })
    expect(typeof host.id).toBe('number')

    await db.updateTable('host').set({ cursor: 2 ** 40 }).where('id', '=', host.id).execute()
    expect((await db.selectFrom('host').select('cursor').where('id', '=', host.id).executeTakeFirstOrThrow()).cursor).toBe(2 ** 40)

    const account = await db
      .insertInto('account')
      .values({ did: 'did:plc:abcdefghijklmnopqrstuvwx', host_id: host.id })
      .returningAll()
      .executeTakeFirstOrThrow()
    expect(account).toMatchObject({ local_status: 'active', upstream_status: 'active' })

    const commitCid = cidForCbor(new Uint8Array([1, 2, 3]))
    const dataCid = cidForCbor(new Uint8Array([4]))
    await db.insertInto('account_head').values({ account_id: account.id, rev: '3lhhxizu5wr2d', commit_cid: commitCid, data_cid: dataCid }).execute()
    const head = await db.selectFrom('account_head').selectAll().where('account_id', '=', account.id).executeTakeFirstOrThrow()
    expect(new Uint8Array(head.commit_cid)).toEqual(commitCid)
    expect(new Uint8Array(head.data_cid)).toEqual(dataCid)

    // the event table is partitioned: a partition must exist for a row to land
    await sql`create table event_test_p1 partition of event for values from (1) to (1000)`.execute(db)
    await db.insertInto('event').values({ seq: 7, account_id: account.id, kind: 1, frame: new Uint8Array([9, 9]), commit_cid: commitCid }).execute()
    const event = await db.selectFrom('event').selectAll().executeTakeFirstOrThrow()
    expect(event.seq).toBe(7)
    expect(new Uint8Array(event.frame)).toEqual(new Uint8Array([9, 9]))
    await expect(
      db.insertInto('event').values({ seq: 5000, account_id: account.id, kind: 1, frame: new Uint8Array([1]) }).execute(),
    ).rejects.toThrow()

    await db.insertInto('domain_ban').values({ domain: 'bad.example' }).execute()
    expect(await db.selectFrom('domain_ban').select('domain').execute()).toEqual([{ domain: 'bad.example' }])

    await db
      .insertInto('identity')
      .values({ did: account.did, status: 'ok', signing_key: 'did:key:zQ3sh', pds_endpoint: 'https://pds.example.com', handle: 'a.example.com' })
      .execute()
    expect(await db.selectFrom('identity').select(['status', 'handle']).executeTakeFirstOrThrow()).toEqual({ status: 'ok', handle: 'a.example.com' })

    await db.insertInto('relay_state').values({ key: 'seq', value: JSON.stringify({ seq: 42 }) }).execute()
    expect((await db.selectFrom('relay_state').select('value').executeTakeFirstOrThrow()).value).toEqual({ seq: 42 })

    // duplicate hostnames and DIDs are refused by the schema
    await expect(db.insertInto('host').values({ hostname: 'pds.example.com', account_limit: 1 }).execute()).rejects.toThrow()
    await expect(db.insertInto('account').values({ did: account.did, host_id: host.id }).execute()).rejects.toThrow()
  })

  it('keeps transactions atomic', async () => {
    const { db } = t.storage
    await expect(
      db.transaction().execute(async (trx) => {
        await trx.insertInto('domain_ban').values({ domain: 'rolled.back' }).execute()
        throw new Error('abort')
      }),
    ).rejects.toThrow('abort')
    expect(await db.selectFrom('domain_ban').select('domain').where('domain', '=', 'rolled.back').execute()).toEqual([])
  })

  it('serialises concurrent transactions', async () => {
    const { db } = t.storage
    await db.insertInto('relay_state').values({ key: 'counter', value: '0' }).execute()
    await Promise.all(
      Array.from({ length: 10 }, () =>
        db.transaction().execute(async (trx) => {
          const row = await sql<{ value: number }>`select value from relay_state where key = 'counter' for update`.execute(trx)
          const next = Number(row.rows[0]!.value) + 1
          await trx.updateTable('relay_state').set({ value: JSON.stringify(next) }).where('key', '=', 'counter').execute()
        }),
      ),
    )
    expect((await db.selectFrom('relay_state').select('value').where('key', '=', 'counter').executeTakeFirstOrThrow()).value).toBe(10)
  })
})
