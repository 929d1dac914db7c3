/**
 * An idle connection whose server goes away (a restart, an administrator's terminate): the pool
 * reports the error without crashing, the report carries the server's error and not pg-pool's
 * whole client (kilobytes of driver state in every such log line), and the next query works.
 */
import pg from 'pg'
import { sql } from 'kysely'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { openStorage, type Storage } from '../../src/storage/db.js'
import { createPostgresDatabase, TEST_DATABASE_URL } from '../helpers/db.js'
import { waitUntil } from '../helpers/wait.js'

describe('a pool connection lost while idle (postgres)', () => {
  let db: { url: string; drop: () => Promise<void> }
  let storage: Storage
  const reported: Error[] = []

  beforeAll(async () => {
    db = await createPostgresDatabase()
    storage = await openStorage({ dataDir: '', databaseUrl: db.url, poolSize: 2, onPoolError: (err) => reported.push(err) })
  })
  afterAll(async () => {
    await storage?.close()
    await db?.drop()
  })

  it('is reported with the server’s error, without the client, and the next query works', async () => {
    const pid = (await sql<{ pid: number }>`select pg_backend_pid() as pid`.execute(storage.db)).rows[0]!.pid
    const admin = new pg.Client({ connectionString: TEST_DATABASE_URL })
    await admin.connect()
    try {
      await admin.query('select pg_terminate_backend($1)', [pid])
    } finally {
      await admin.end()
    }
    await waitUntil(() => reported.length > 0, 'the idle connection’s error reported')
    const err = reported[0]!
    expect((err as { code?: string }).code).toBe('57P01')
    expect(err.message).toMatch(/terminating connection/)
    expect(Object.keys(err)).not.toContain('client')
    expect(JSON.stringify(err).length).toBeLessThan(2_000)
    const again = await sql<{ one: number }>`select 1 as one`.execute(storage.db)
    expect(again.rows[0]!.one).toBe(1)
  })
})
