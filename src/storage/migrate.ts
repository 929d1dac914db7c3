/**
 * Migrations from schema.sql: `-- migrate:N` sections applied in order, each in
 * its own transaction, under an advisory lock so two processes cannot race.
 */
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { sql, type Kysely } from 'kysely'
import { packageRoot } from '../package-root.js'
import type { Storage } from './db.js'
import type { Database } from './types.js'

export interface Migration {
  version: number
  sql: string
}

export class SchemaTooNewError extends Error {
  override readonly name = 'SchemaTooNewError'
  constructor(
    readonly databaseVersion: number,
    readonly codeVersion: number,
  ) {
    super(
      `database schema version ${databaseVersion} is newer than this relay supports (${codeVersion}); ` +
        'upgrade atrelay or point it at another database',
    )
  }
}

const MARKER = /^--\s*migrate:(\d+)\s*$/gm
const LOCK_KEY = 7_245_170_001 // arbitrary, constant: serialises migrators

export function parseMigrations(text: string): Migration[] {
  const marks = [...text.matchAll(MARKER)]
  const migrations = marks.map((m, i) => ({
    version: Number(m[1]),
    sql: text.slice(m.index! + m[0].length, marks[i + 1]?.index ?? text.length).trim(),
  }))
  migrations.forEach((m, i) => {
    if (m.version !== i + 1) throw new Error(`schema.sql: migration ${m.version} out of order (expected ${i + 1})`)
  })
  return migrations
}

function schemaPath(): string {
  return join(packageRoot(), 'schema.sql')
}

export function loadMigrations(): Migration[] {
  return parseMigrations(readFileSync(schemaPath(), 'utf8'))
}

export function currentSchemaVersion(storage: Storage): Promise<number> {
  return schemaVersion(storage.db)
}

/** The highest applied migration, 0 for a database without the schema_version table (on a connection or in a transaction). */
async function schemaVersion(db: Kysely<Database>): Promise<number> {
  const { rows } = await sql<{ exists: string | null }>`select to_regclass('schema_version')::text as exists`.execute(db)
  if (!rows[0]?.exists) return 0
  const max = await db
    .selectFrom('schema_version')
    .select((eb) => eb.fn.max('version').as('v'))
    .executeTakeFirst()
  return Number(max?.v ?? 0)
}

/** Applies pending migrations; returns the versions applied (empty when up to date). */
export async function migrate(storage: Storage, migrations: Migration[] = loadMigrations()): Promise<number[]> {
  const codeVersion = migrations.length
  const applied: number[] = []
  for (const m of migrations) {
    const done = await storage.db.transaction().execute(async (trx) => {
      await sql`select pg_advisory_xact_lock(${LOCK_KEY})`.execute(trx)
      const version = await schemaVersion(trx)
      if (version > codeVersion) throw new SchemaTooNewError(version, codeVersion)
      if (version >= m.version) return false
      await sql.raw(m.sql).execute(trx)
      await sql`insert into schema_version (version) values (${m.version})`.execute(trx)
      return true
    })
    if (done) applied.push(m.version)
  }
  // A database that is already newer than every migration we know is refused too.
  const version = await currentSchemaVersion(storage)
  if (version > codeVersion) throw new SchemaTooNewError(version, codeVersion)
  return applied
}
