/**
 * Opens the relay's database: PostgreSQL through `pg` when a URL is given,
 * otherwise embedded PGlite in a data directory. Both speak the same SQL.
 */
import { mkdirSync } from 'node:fs'
import { Kysely, PostgresDialect, sql, type CompiledQuery } from 'kysely'
import type { Logger } from 'pino'
import pg from 'pg'
import { configDefault } from '../config.js'
import { PGliteDialect } from './pglite-dialect.js'
import { PREPARED_OFF_MESSAGE, preparedRunner } from './prepared-runner.js'
import { StatementWriter } from './statement-writer.js'
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
  /** The writer thread running `executeRepeated`, when there is one (RELAY_DB_WRITER=thread on Postgres). */
  readonly writer?: StatementWriter | undefined
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
  /** Told once when prepared statements turn out not to work (a pooler in front of Postgres), and about the writer thread. */
  logger?: Logger
  /**
   * Postgres only: where `executeRepeated` runs. `thread` (RELAY_DB_WRITER's default, config.ts):
   * on the writer thread with its own connections (statement-writer.ts); `inline` (the default
   * here, for one-off callers such as `migrate`): on this thread through the pool.
   */
  writer?: 'thread' | 'inline'
}

/** Connections of the writer thread's own pool: the batch commit runs one batch at a time; the identity rows and the splitter's log may overlap it. */
const WRITER_POOL_SIZE = 2

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
    pool.on('error', (err) => {
      // pg-pool hangs the whole client on the error: in a log line it is kilobytes of driver state.
      delete (err as { client?: unknown }).client
      options.onPoolError?.(err)
    })
    const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) })
    const inline = preparedRunner(pool, (err, code) => options.logger?.warn({ err, code }, PREPARED_OFF_MESSAGE))
    const poolStats = () => ({ total: pool.totalCount, idle: pool.idleCount, waiting: pool.waitingCount })
    if (options.writer !== 'thread') return wrap(db, 'postgres', (query) => inline(query.sql, query.parameters), poolStats)
    const writer = new StatementWriter({ url: options.databaseUrl, poolSize: WRITER_POOL_SIZE, inline, logger: options.logger })
    // A thread that cannot load leaves the statements on this thread (logged): the relay still starts.
    await writer.ready().catch(() => undefined)
    return wrap(db, 'postgres', (query) => writer.run(query), poolStats, writer)
  }
  const { PGlite } = await import('@electric-sql/pglite')
  const inMemory = options.dataDir.startsWith('memory://')
  if (!inMemory) mkdirSync(options.dataDir, { recursive: true })
  const lite = new PGlite(inMemory ? undefined : options.dataDir, options.pgliteImage ? { loadDataDir: options.pgliteImage } : {})
  await lite.waitReady
  const db = new Kysely<Database>({ dialect: new PGliteDialect(lite) })
  return wrap(db, 'pglite', async (query) => void (await db.executeQuery(query)), () => ({ total: 1, idle: 0, waiting: 0 }))
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

function wrap(db: Kysely<Database>, kind: StorageKind, executeRepeated: Storage['executeRepeated'], poolStats: Storage['poolStats'], writer?: StatementWriter): Storage {
  let closed = false
  return {
    db,
    kind,
    executeRepeated,
    poolStats,
    writer,
    async ping() {
      await sql`select 1`.execute(db)
    },
    async close() {
      if (closed) return
      closed = true
      await writer?.close()
      await db.destroy()
    },
  }
}
