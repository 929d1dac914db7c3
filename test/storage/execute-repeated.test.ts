/**
 * Storage.executeRepeated: the batch commit's statement is prepared once per
 * Postgres connection; when prepared statements are lost under it (what a
 * transaction pooler does), it says so once and runs them unprepared. The
 * same on the writer thread (RELAY_DB_WRITER=thread), which also has to hand
 * every parameter and error across intact and survive its own death.
 */
import { CompiledQuery, sql } from 'kysely'
import pino from 'pino'
import { Registry } from 'prom-client'
import { afterEach, describe, expect, it } from 'vitest'
import { openStorage, type Storage } from '../../src/storage/db.js'
import { registerStorageMetrics } from '../../src/api/storage-metrics.js'
import { byteaArray, int8Array, textArray } from '../../src/storage/binary-array.js'
import { createPostgresDatabase, createTestDatabase } from '../helpers/db.js'
import { waitUntil } from '../helpers/wait.js'

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

describe('executeRepeated on the writer thread (RELAY_DB_WRITER=thread)', () => {
  async function postgresWithWriter(logger = pino({ level: 'silent' })): Promise<Storage> {
    const { url, drop } = await createPostgresDatabase()
    const storage = await openStorage({ databaseUrl: url, dataDir: '', poolSize: 1, logger, writer: 'thread' })
    cleanups.push(drop, () => storage.close())
    await sql`create table t (n int8 primary key)`.execute(storage.db)
    await sql`create table blobs (n int8, b bytea, s text)`.execute(storage.db)
    await sql`create table seen (name text)`.execute(storage.db)
    return storage
  }
  // Run on the writer's own connection: its session's prepared statements.
  const recordPrepared = CompiledQuery.raw('insert into seen select name from pg_prepared_statements', [])
  async function seen(storage: Storage): Promise<string[]> {
    const { rows } = await sql<{ name: string }>`select name from seen order by name`.execute(storage.db)
    return rows.map((r) => r.name)
  }

  it('runs repeated statements on its own connections, prepared, Buffer and scalar parameters intact', async () => {
    const storage = await postgresWithWriter()
    expect(storage.writer?.thread).toBeDefined()
    await storage.executeRepeated(insert(1))
    await storage.executeRepeated(insert(2))
    // Buffers of every size and origin (a pooled slice, a view into a bigger buffer) arrive byte for byte.
    const big = Buffer.alloc(300_000, 7)
    const view = Buffer.from('xxhello worldxx').subarray(2, 13)
    await storage.executeRepeated(
      CompiledQuery.raw('insert into blobs (n, b, s) select * from unnest($1::int8[], $2::bytea[], $3::text[])', [
        int8Array([10, 11, 12]),
        byteaArray([big, view, Buffer.from([0, 1, 2])]),
        textArray(['é', 'plain', 'x']),
      ]),
    )
    await storage.executeRepeated(CompiledQuery.raw('insert into blobs (n, b, s) values ($1::int8, $2::bytea, $3::text)', [13, Buffer.from('raw'), 'scalar']))
    expect(await stored(storage)).toEqual([1, 2, 1001, 1002])
    const { rows } = await sql<{ n: number; b: Buffer; s: string }>`select n, b, s from blobs order by n`.execute(storage.db)
    expect(rows.map((r) => [Number(r.n), r.s, r.b.length])).toEqual([[10, 'é', 300_000], [11, 'plain', 11], [12, 'x', 3], [13, 'scalar', 3]])
    expect(rows[0]!.b.equals(big)).toBe(true)
    expect(rows[1]!.b.toString()).toBe('hello world')
    expect(rows[3]!.b.toString()).toBe('raw')
    // Not one of them ran on this thread's pool: that pool's session prepared nothing.
    expect(await prepared(storage)).toEqual([])
    await storage.executeRepeated(recordPrepared)
    const names = await seen(storage)
    expect(names.length).toBeGreaterThanOrEqual(3) // the insert texts, each once, and this statement itself
    for (const name of names) expect(name).toMatch(/^atrelay_[0-9a-f]{16}$/)
    expect(storage.writer?.counts).toEqual({ thread: 5, inline: 0 })
  })

  it('hands a failed statement back with its SQLSTATE, message and fields, and goes on', async () => {
    const storage = await postgresWithWriter()
    await storage.executeRepeated(insert(1))
    const err = await storage.executeRepeated(insert(1)).then(
      () => undefined,
      (e: unknown) => e as Error & { code?: string; constraint?: string },
    )
    expect(err).toBeInstanceOf(Error)
    expect(err).toMatchObject({ code: '23505', constraint: 't_pkey' })
    expect(err?.message).toContain('duplicate key')
    await storage.executeRepeated(insert(5))
    expect(await stored(storage)).toEqual([1, 5, 1001, 1005])
  })

  it('says once when prepared statements are lost under it, and runs them unprepared from then on', async () => {
    const lines: { msg: string; code?: string }[] = []
    const logger = pino({ level: 'warn' }, { write: (line: string) => void lines.push(JSON.parse(line)) })
    const { url, drop } = await createPostgresDatabase()
    // One writer connection would be the point; the writer's pool has two, so both are emptied.
    const storage = await openStorage({ databaseUrl: url, dataDir: '', poolSize: 1, logger, writer: 'thread' })
    cleanups.push(drop, () => storage.close())
    await sql`create table t (n int8 primary key)`.execute(storage.db)
    await storage.executeRepeated(insert(1))
    // What a transaction pooler does to the client's session: the client still believes it is prepared.
    await storage.executeRepeated(CompiledQuery.raw('deallocate all', []))
    await expect(storage.executeRepeated(insert(2))).rejects.toMatchObject({ code: '26000' })
    expect(lines.filter((l) => l.msg.startsWith('prepared statements do not survive'))).toHaveLength(1)
    await storage.executeRepeated(insert(2))
    await storage.executeRepeated(insert(3))
    expect(await stored(storage)).toEqual([1, 2, 3, 1001, 1002, 1003])
  })

  it('fails what the thread held when it dies, runs statements on the main thread meanwhile, and starts it again', async () => {
    const lines: { msg: string }[] = []
    const logger = pino({ level: 'info' }, { write: (line: string) => void lines.push(JSON.parse(line)) })
    const storage = await postgresWithWriter(logger)
    const registry = new Registry()
    registerStorageMetrics({ registry, storage, dataDir: '', logger })
    const fallbacks = async () => (await registry.getSingleMetric('relay_db_writer_fallbacks_total')!.get()).values[0]?.value
    expect(await fallbacks()).toBe(0)
    expect(storage.writer?.state).toBe('up')
    const firstTid = storage.writer?.threadId // read for relay_thread_cpu_seconds_total{thread="db-writer"}
    expect(firstTid).toBeGreaterThan(0)
    expect(firstTid).not.toBe(process.pid)
    const thread = storage.writer?.thread
    expect(thread).toBeDefined()
    const held = storage.executeRepeated(CompiledQuery.raw('select pg_sleep(30)', []))
    await thread!.terminate()
    await expect(held).rejects.toThrow(/writer thread exited/)
    expect(lines.some((l) => l.msg.startsWith('database writer thread died'))).toBe(true)
    // Meanwhile: the main thread's pool, nothing waits.
    await storage.executeRepeated(insert(1))
    expect(storage.writer?.counts.inline).toBe(1)
    expect(await fallbacks()).toBe(1) // what the RelayDatabaseWriterThreadDown alert watches
    expect(storage.writer?.state).toBe('restarting') // what _health shows
    // Back after its restart wait (1 s).
    await waitUntil(() => storage.writer?.thread !== undefined, 'the writer thread to be back', 15_000)
    expect(storage.writer?.state).toBe('up')
    expect(storage.writer?.threadId).not.toBe(firstTid)
    await storage.executeRepeated(insert(2))
    expect(storage.writer?.counts).toMatchObject({ inline: 1, thread: 2 })
    expect(await stored(storage)).toEqual([1, 2, 1001, 1002])
  })
})
