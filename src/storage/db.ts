/**
 * Opens the relay's database: PostgreSQL through `pg` when a URL is given,
 * otherwise embedded PGlite in a data directory. Both speak the same SQL.
 */
import { mkdirSync } from 'node:fs'
import { createHash } from 'node:crypto'
import { Kysely, PostgresDialect, sql, type CompiledQuery } from 'kysely'
import type { Logger } from 'pino'
import pg from 'pg'
import { configDefault } from '../config.js'
import { PGliteDialect } from './pglite-dialect.js'
import type { Database } from './types.js'

export type StorageKind = 'postgres' | 'pglite'

export interface Storage {
  readonly db: Kysely<Database>
  readonly kind: StorageKind
  /**
   * Runs a statement whose text repeats (the batch commit): on Postgres it is
   * prepared once per connection and then only bound and executed, so the
   * server neither parses nor plans it again. PGlite runs it as is.
   */
  executeRepeated(query: CompiledQuery): Promise<void>
  /** Throws when the database cannot answer a trivial query. */
  ping(): Promise<void>
  /** Connection pool usage (PGlite is a single connection). */
  poolStats(): { total: number; idle: number; waiting: number }
  close(): Promise<void>
}

export interface StorageOptions {
  /** postgres://… URL; when absent, PGlite in `dataDir`. */
  databaseUrl?: string | undefined
  /** PGlite data directory (created if missing); `memory://` for an in-memory database. */
  dataDir: string
  /** Postgres pool size (default RELAY_DB_POOL_SIZE's, config.ts). */
  poolSize?: number
  /**
   * PGlite only: start from this data-directory image (PGlite dumpDataDir) instead of running
   * initdb, which is most of PGlite's start-up time. Tests use it to open many fresh databases.
   */
  pgliteImage?: Blob
  /** Told about errors on idle pooled connections (the next query also fails). */
  onPoolError?: (err: Error) => void
  /** Told once when prepared statements turn out not to work (a pooler in front of Postgres). */
  logger?: Logger
}

const INT8_OID = 20

/** Seqs, ids and counts are int8 in SQL and always below 2^53: read them as numbers. */
const pgTypes = {
  getTypeParser(oid: number, format?: 'text' | 'binary') {
    if (oid === INT8_OID) return (value: string) => Number(value)
    return pg.types.getTypeParser(oid, format as 'text')
  },
}

export async function openStorage(options: StorageOptions): Promise<Storage> {
  if (options.databaseUrl) {
    const pool = new pg.Pool({
      connectionString: options.databaseUrl,
      max: options.poolSize ?? configDefault('dbPoolSize'),
      types: pgTypes,
      connectionTimeoutMillis: 5_000,
    })
    // An idle client losing its server must not crash the process; the next query reports it.
    pool.on('error', (err) => options.onPoolError?.(err))
    const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) })
    return wrap(db, 'postgres', preparedRunner(pool, db, options.logger), () => ({
      total: pool.totalCount,
      idle: pool.idleCount,
      waiting: pool.waitingCount,
    }))
  }
  const { PGlite } = await import('@electric-sql/pglite')
  const inMemory = options.dataDir.startsWith('memory://')
  if (!inMemory) mkdirSync(options.dataDir, { recursive: true })
  const lite = new PGlite(inMemory ? undefined : options.dataDir, options.pgliteImage ? { loadDataDir: options.pgliteImage } : {})
  await lite.waitReady
  const db = new Kysely<Database>({ dialect: new PGliteDialect(lite) })
  return wrap(db, 'pglite', async (query) => void (await db.executeQuery(query)), () => ({ total: 1, idle: 0, waiting: 0 }))
}

/** Distinct statement texts given a name; past it, further texts run unprepared (the texts are a handful in practice). */
const MAX_PREPARED_TEXTS = 256
/** The server no longer knows a statement the client prepared (26000), or already has the name (42P05): a pooler in between. */
const PREPARED_STATEMENT_LOST = new Set(['26000', '42P05'])

/**
 * Named statements through the pool: pg prepares a name on each connection the
 * first time it runs there. Measured on the batch commit (70 events of 1.6 KB
 * per batch, bench/notes.md): the Postgres backend's CPU per event 42 → 26 µs,
 * the relay's 29 → 23 µs. A transaction pooler (pgbouncer) can break named
 * statements; the first such error switches them off for good and is thrown:
 * the batch commit and the splitter's log retry it as any failed batch, the
 * identity group commit fails that save (the row is written at the next resolution).
 */
function preparedRunner(pool: pg.Pool, db: Kysely<Database>, logger: Logger | undefined): (query: CompiledQuery) => Promise<void> {
  const names = new Map<string, string>()
  let enabled = true
  return async (query) => {
    const name = enabled ? statementName(names, query.sql) : undefined
    if (name === undefined) {
      await db.executeQuery(query)
      return
    }
    try {
      await pool.query({ name, text: query.sql, values: query.parameters as unknown[] })
    } catch (err) {
      const code = (err as { code?: unknown }).code
      if (typeof code === 'string' && PREPARED_STATEMENT_LOST.has(code)) {
        enabled = false
        logger?.warn({ err, code }, 'prepared statements do not survive on this database connection (a pooler?); running repeated statements unprepared')
      }
      throw err
    }
  }
}

function statementName(names: Map<string, string>, text: string): string | undefined {
  let name = names.get(text)
  if (name === undefined) {
    if (names.size >= MAX_PREPARED_TEXTS) return undefined
    name = 'atrelay_' + createHash('sha256').update(text).digest('hex').slice(0, 16)
    names.set(text, name)
  }
  return name
}

/**
 * The pool public API queries use, never the ingest pool. Postgres: its own
 * pool, on `databaseUrl` (a read replica, or the primary again). PGlite is
 * one in-process connection, so the query storage is the same connection
 * (closing it is left to the primary); what keeps public queries from
 * monopolising it is the API's query gate (RELAY_DB_QUERY_POOL_SIZE at once).
 */
export async function openQueryStorage(primary: Storage, options: Omit<StorageOptions, 'dataDir'>): Promise<Storage> {
  if (primary.kind === 'pglite' || !options.databaseUrl) return { ...primary, close: async () => {} }
  return openStorage({ ...options, dataDir: '' })
}

function wrap(db: Kysely<Database>, kind: StorageKind, executeRepeated: Storage['executeRepeated'], poolStats: Storage['poolStats']): Storage {
  let closed = false
  return {
    db,
    kind,
    executeRepeated,
    poolStats,
    async ping() {
      await sql`select 1`.execute(db)
    },
    async close() {
      if (closed) return
      closed = true
      await db.destroy()
    },
  }
}
