/**
 * Fresh databases for tests: each call makes a new Postgres database (dropped by
 * `cleanup`) or an in-memory PGlite. Postgres tests never skip: an unreachable
 * server (TEST_DATABASE_URL) fails them.
 */
import { randomBytes } from 'node:crypto'
import pg from 'pg'
import { openStorage, type Storage, type StorageKind } from '../../src/storage/db.js'
import { migrate } from '../../src/storage/migrate.js'

export const TEST_DATABASE_URL = process.env.TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test'

export interface TestDatabase {
  storage: Storage
  /** The database URL (Postgres) or undefined (PGlite). */
  url: string | undefined
  cleanup(): Promise<void>
}

function withDatabase(url: string, name: string): string {
  const u = new URL(url)
  u.pathname = '/' + name
  return u.toString()
}

async function admin<T>(fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: TEST_DATABASE_URL, connectionTimeoutMillis: 5_000 })
  await client.connect()
  try {
    return await fn(client)
  } finally {
    await client.end()
  }
}

/** Creates an empty Postgres database and returns its URL and a dropper. */
export async function createPostgresDatabase(): Promise<{ url: string; drop: () => Promise<void> }> {
  const name = 'atrelay_test_' + randomBytes(6).toString('hex')
  await admin((c) => c.query(`create database ${name}`))
  return {
    url: withDatabase(TEST_DATABASE_URL, name),
    drop: () => admin((c) => c.query(`drop database if exists ${name} with (force)`)).then(() => undefined),
  }
}

/** A migrated database of the given kind. */
let pgliteImage: Promise<Blob> | undefined

/**
 * An initialised, empty PGlite data directory, made once per test process: initdb is most of
 * PGlite's start-up (seconds on a quiet machine, tens of seconds on a busy one), loading an image
 * a fraction of it.
 */
function freshPgliteImage(): Promise<Blob> {
  pgliteImage ??= (async () => {
    const { PGlite } = await import('@electric-sql/pglite')
    const lite = new PGlite()
    try {
      await lite.waitReady
      return await lite.dumpDataDir('none')
    } finally {
      await lite.close()
    }
  })()
  return pgliteImage
}

export async function createTestDatabase(kind: StorageKind, opts: { migrate?: boolean } = {}): Promise<TestDatabase> {
  if (kind === 'pglite') {
    const storage = await openStorage({ dataDir: 'memory://', pgliteImage: await freshPgliteImage() })
    if (opts.migrate !== false) await migrate(storage)
    return { storage, url: undefined, cleanup: () => storage.close() }
  }
  const { url, drop } = await createPostgresDatabase()
  const storage = await openStorage({ dataDir: '', databaseUrl: url, poolSize: 4 })
  if (opts.migrate !== false) await migrate(storage)
  return {
    storage,
    url,
    async cleanup() {
      await storage.close()
      await drop()
    },
  }
}

/** The storage kinds a test file should run against. */
export const STORAGE_KINDS: StorageKind[] = ['postgres', 'pglite']
