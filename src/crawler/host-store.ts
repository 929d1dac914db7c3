/** The crawler's reads and writes of the `host` table. It never writes `cursor` except to reset it (the sequencer persists cursors). */
import { sql, type Kysely } from 'kysely'
import type { Database, Host, HostStatus } from '../storage/types.js'

export async function findHost(db: Kysely<Database>, hostname: string): Promise<Host | undefined> {
  return db.selectFrom('host').selectAll().where('hostname', '=', hostname).executeTakeFirst()
}

/** Every host that should be connected at start-up: all but banned ones, oldest first. */
export async function loadConnectableHosts(db: Kysely<Database>): Promise<Host[]> {
  return db.selectFrom('host').selectAll().where('status', '!=', 'banned').orderBy('id').execute()
}

/** How many hosts start-up will connect (those loadConnectableHosts returns). */
export async function countConnectableHosts(db: Kysely<Database>): Promise<number> {
  const row = await db.selectFrom('host').select(sql<number>`count(*)::int`.as('n')).where('status', '!=', 'banned').executeTakeFirstOrThrow()
  return Number(row.n)
}

export interface NewHostRow {
  hostname: string
  ssl: boolean
  accountLimit: number
  trusted: boolean
  status?: HostStatus
  lastError?: string
}

/** Inserts a host; undefined when a concurrent request inserted it first. */
export async function insertHost(db: Kysely<Database>, row: NewHostRow): Promise<Host | undefined> {
  return db
    .insertInto('host')
    .values({
      hostname: row.hostname,
      ssl: row.ssl,
      account_limit: row.accountLimit,
      trusted: row.trusted,
      status: row.status ?? 'active',
      ...(row.lastError !== undefined ? lastErrorColumns(row.lastError) : { last_error: null, last_error_at: null }),
    })
    .onConflict((oc) => oc.column('hostname').doNothing())
    .returningAll()
    .executeTakeFirst()
}

/** The last_error columns for a problem seen now; the message is capped so a hostile host cannot bloat the row. */
function lastErrorColumns(message: string): { last_error: string; last_error_at: Date } {
  return { last_error: message.slice(0, 1_000), last_error_at: new Date() }
}

export interface HostPatch {
  status?: HostStatus
  /**
   * A new last_error, stamped now. The last problem stays visible as history; null
   * clears it, only for the operator's own block message once the host is unblocked.
   */
  lastError?: string | null
  accountLimit?: number
  lenient?: boolean | null
  /** Only the FutureCursor reset writes this. */
  resetCursor?: true
}

/** Why an admin write to the host table did not take: the row is gone, or the UPDATE failed. */
export type HostWriteFailure = 'no-row' | 'failed'

export class HostWriteError extends Error {
  override readonly name = 'HostWriteError'
  constructor(
    readonly reason: HostWriteFailure,
    readonly hostname: string,
    options?: { cause?: unknown },
  ) {
    super(reason === 'no-row' ? `host ${hostname}: the update matched no row` : `host ${hostname}: the update failed`, options)
  }
}

/** The number of rows changed: 0 when the host row is gone. */
export async function updateHost(db: Kysely<Database>, id: number, patch: HostPatch): Promise<number> {
  const res = await db
    .updateTable('host')
    .set({
      ...(patch.status !== undefined ? { status: patch.status } : {}),
      ...(patch.lastError === null ? { last_error: null, last_error_at: null } : patch.lastError !== undefined ? lastErrorColumns(patch.lastError) : {}),
      ...(patch.accountLimit !== undefined ? { account_limit: patch.accountLimit } : {}),
      ...(patch.lenient !== undefined ? { lenient: patch.lenient } : {}),
      ...(patch.resetCursor ? { cursor: 0 } : {}),
      updated_at: sql<Date>`now()`,
    })
    .where('id', '=', id)
    .executeTakeFirst()
  return Number(res.numUpdatedRows)
}
