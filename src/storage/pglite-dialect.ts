/**
 * A Kysely dialect for embedded PGlite. PGlite is a single connection, so the
 * driver hands it to one user at a time: a transaction holds it exclusively
 * until commit or rollback, and other queries wait their turn.
 */
import type { PGlite } from '@electric-sql/pglite'
import {
  CompiledQuery,
  PostgresAdapter,
  PostgresIntrospector,
  PostgresQueryCompiler,
  type DatabaseConnection,
  type Dialect,
  type Driver,
  type Kysely,
  type QueryResult,
  type TransactionSettings,
} from 'kysely'

class PGliteConnection implements DatabaseConnection {
  constructor(private readonly pg: PGlite) {}

  async executeQuery<R>(query: CompiledQuery): Promise<QueryResult<R>> {
    // Parameterless SQL may hold several statements (migrations); exec runs them all.
    const result =
      query.parameters.length === 0
        ? lastOf(await this.pg.exec(query.sql))
        : await this.pg.query<R>(query.sql, query.parameters as unknown[])
    const affected = result.affectedRows
    return {
      rows: result.rows as R[],
      ...(affected !== undefined ? { numAffectedRows: BigInt(affected) } : {}),
    }
  }

  // eslint-disable-next-line require-yield
  async *streamQuery<R>(): AsyncIterableIterator<QueryResult<R>> {
    throw new Error('streaming queries are not supported on PGlite')
  }
}

function lastOf<R>(results: { rows: unknown[]; affectedRows?: number }[]): { rows: R[]; affectedRows?: number } {
  const last = results[results.length - 1]
  return { rows: (last?.rows ?? []) as R[], ...(last?.affectedRows !== undefined ? { affectedRows: last.affectedRows } : {}) }
}

/** One-at-a-time lease on the single PGlite connection. */
class ConnectionLease {
  private tail: Promise<void> = Promise.resolve()

  acquire(): Promise<() => void> {
    let release!: () => void
    const next = new Promise<void>((resolve) => (release = resolve))
    const ready = this.tail.then(() => release)
    this.tail = this.tail.then(() => next)
    return ready
  }
}

class PGliteDriver implements Driver {
  private readonly lease = new ConnectionLease()
  private readonly releases = new Map<DatabaseConnection, () => void>()

  constructor(private readonly pg: PGlite) {}

  async init(): Promise<void> {
    await this.pg.waitReady
  }

  async acquireConnection(): Promise<DatabaseConnection> {
    const release = await this.lease.acquire()
    // One wrapper per lease so the release map cannot confuse two holders.
    const conn = new PGliteConnection(this.pg)
    this.releases.set(conn, release)
    return conn
  }

  async beginTransaction(conn: DatabaseConnection, settings: TransactionSettings): Promise<void> {
    const isolation = settings.isolationLevel ? ` ISOLATION LEVEL ${settings.isolationLevel.toUpperCase()}` : ''
    await conn.executeQuery(CompiledQuery.raw(`BEGIN${isolation}`))
  }

  async commitTransaction(conn: DatabaseConnection): Promise<void> {
    await conn.executeQuery(CompiledQuery.raw('COMMIT'))
  }

  async rollbackTransaction(conn: DatabaseConnection): Promise<void> {
    await conn.executeQuery(CompiledQuery.raw('ROLLBACK'))
  }

  async releaseConnection(conn: DatabaseConnection): Promise<void> {
    const release = this.releases.get(conn)
    this.releases.delete(conn)
    release?.()
  }

  async destroy(): Promise<void> {
    if (!this.pg.closed) await this.pg.close()
  }
}

export class PGliteDialect implements Dialect {
  constructor(private readonly pg: PGlite) {}
  createAdapter() {
    return new PostgresAdapter()
  }
  createDriver(): Driver {
    return new PGliteDriver(this.pg)
  }
  createQueryCompiler() {
    return new PostgresQueryCompiler()
  }
  createIntrospector(db: Kysely<unknown>) {
    return new PostgresIntrospector(db)
  }
}
