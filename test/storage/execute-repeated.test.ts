/**
 * Storage.executeRepeated: the batch commit's statement is prepared once per
 * Postgres connection; when prepared statements are lost under it (what a
 * transaction pooler does), it says so once and runs them unprepared.
 */
import { CompiledQuery, sql } from 'kysely'
import pino from 'pino'
import { afterEach, describe, expect, it } from 'vitest'
import { openStorage, type Storage } from '../../src/storage/db.js'
import { createPostgresDatabase, createTestDatabase } from '../helpers/db.js'

const cleanups: (() => Promise<void>)[] = []
afterEach(async () => {
  for (const fn of cleanups.splice(0).reverse()) await fn()
})

async function postgresWithOneConnection(logger = pino({ level: 'silent' })): Promise<Storage> {
  const { url, drop } = await createPostgresDatabase()
  // One connection: pg_prepared_statements (per session) shows what this pool prepared.
  const storage = await openStorage({ databaseUrl: url, dataDir: '', poolSize: 1, logger })
  cleanups.push(drop, () => storage.close())
  await sql`create table t (n int8 primary key)`.execute(storage.db)
  return storage
}

const insert = (n: number) => CompiledQuery.raw('insert into t (n) select * from unnest($1::int8[])', [[n, n + 1000]])

async function prepared(storage: Storage): Promise<string[]> {
  const { rows } = await sql<{ name: string }>`select name from pg_prepared_statements order by name`.execute(storage.db)
  return rows.map((r) => r.name)
}

async function stored(storage: Storage): Promise<number[]> {
  const { rows } = await sql<{ n: number }>`select n from t order by n`.execute(storage.db)
  return rows.map((r) => Number(r.n))
}

describe('executeRepeated', () => {
  it('prepares a repeated statement once per connection and runs it with new values', async () => {
    const storage = await postgresWithOneConnection()
    await storage.executeRepeated(insert(1))
    await storage.executeRepeated(insert(2))
    await storage.executeRepeated(CompiledQuery.raw('insert into t (n) values ($1::int8)', [7]))
    expect(await stored(storage)).toEqual([1, 2, 7, 1001, 1002])
    const names = await prepared(storage)
    expect(names).toHaveLength(2) // two texts, each prepared once
    for (const name of names) expect(name).toMatch(/^atrelay_[0-9a-f]{16}$/)
  })

  it('falls back to unprepared statements, once and for good, when the server lost them', async () => {
    const lines: { msg: string; code?: string }[] = []
    const logger = pino({ level: 'warn' }, { write: (line: string) => void lines.push(JSON.parse(line)) })
    const storage = await postgresWithOneConnection(logger)
    await storage.executeRepeated(insert(1))
    // What a transaction pooler does to the client's session: the client still believes it is prepared.
    await sql`deallocate all`.execute(storage.db)
    await expect(storage.executeRepeated(insert(2))).rejects.toMatchObject({ code: '26000' })
    expect(lines.filter((l) => l.msg.startsWith('prepared statements do not survive'))).toHaveLength(1)
    // The caller's retry (the batch commit retries every failed statement) now succeeds, unprepared.
    await storage.executeRepeated(insert(2))
    await storage.executeRepeated(insert(3))
    expect(await stored(storage)).toEqual([1, 2, 3, 1001, 1002, 1003])
    expect(await prepared(storage)).toEqual([])
  })

  it('runs the statement as is on PGlite', async () => {
    const db = await createTestDatabase('pglite', { migrate: false })
    cleanups.push(() => db.cleanup())
    await sql`create table t (n int8 primary key)`.execute(db.storage.db)
    await db.storage.executeRepeated(insert(1))
    await db.storage.executeRepeated(insert(2))
    expect(await stored(db.storage)).toEqual([1, 2, 1001, 1002])
  })
})
