/**
 * A PostgreSQL URL naming a loopback address is switched to the same server's
 * Unix socket when one is found (RELAY_DB_SOCKET=auto, the default). Every
 * event's frame crosses this connection in the batch commit; over loopback TCP
 * the kernel's TCP work for both ends runs in the relay's writes, over a Unix
 * socket it is a copy (bench/notes.md: less CPU per event on the relay's main
 * thread and in Postgres).
 *
 * Switching is safe only when the socket leads to the very server the URL
 * does: a loopback port can be a tunnel to another server while a local one
 * owns the socket. So both are asked who they are (postmaster start time and
 * the database's oid); any difference, or any failure over the socket (its
 * pg_hba rules often differ: peer vs password), keeps TCP and says why.
 */
import { stat } from 'node:fs/promises'
import { join } from 'node:path'
import pg from 'pg'
import type { Logger } from 'pino'

export type DbSocketMode = 'auto' | 'off'

/** Where Debian/Ubuntu packages and PostgreSQL's own default put the socket. */
export const DEFAULT_SOCKET_DIRS = ['/var/run/postgresql', '/tmp']

const LOOPBACK = new Set(['localhost', '127.0.0.1', '[::1]', '::1'])

export interface DbConnectionChoice {
  url: string
  via: 'socket' | 'tcp'
  /** The socket directory used, or why TCP was kept. */
  detail: string
}

export interface LocalSocketOptions {
  mode: DbSocketMode
  /** Directories searched for `.s.PGSQL.<port>`, in order. */
  dirs?: string[]
  connectTimeoutMs?: number
}

export async function preferLocalSocket(databaseUrl: string, opts: LocalSocketOptions): Promise<DbConnectionChoice> {
  const tcp = (detail: string): DbConnectionChoice => ({ url: databaseUrl, via: 'tcp', detail })
  if (opts.mode === 'off') return tcp('RELAY_DB_SOCKET=off')
  const url = new URL(databaseUrl)
  if (url.searchParams.has('host')) return tcp('the URL names its host in ?host=')
  if (!LOOPBACK.has(url.hostname)) return tcp(`${url.hostname} is not a loopback address`)
  const port = url.port || '5432'
  const dir = await findSocketDir(opts.dirs ?? DEFAULT_SOCKET_DIRS, port)
  if (dir === undefined) return tcp(`no .s.PGSQL.${port} socket found`)
  const socketUrl = new URL(databaseUrl)
  socketUrl.searchParams.set('host', dir)
  const timeout = opts.connectTimeoutMs ?? 5_000
  // TCP first: a failure there is the relay's own start-up error, reported as it always was.
  const overTcp = await serverIdentity(databaseUrl, timeout)
  let overSocket: string
  try {
    overSocket = await serverIdentity(socketUrl.toString(), timeout)
  } catch (err) {
    return tcp(`the socket in ${dir} refused: ${(err as Error).message}`)
  }
  if (overSocket !== overTcp) return tcp(`the socket in ${dir} leads to another server or database`)
  return { url: socketUrl.toString(), via: 'socket', detail: dir }
}

async function findSocketDir(dirs: string[], port: string): Promise<string | undefined> {
  for (const dir of dirs) {
    try {
      if ((await stat(join(dir, `.s.PGSQL.${port}`))).isSocket()) return dir
    } catch {
      // Not there: try the next directory.
    }
  }
  return undefined
}

/** The server's start time and the database's oid: equal only for the same database of the same running server. */
async function serverIdentity(connectionString: string, connectionTimeoutMillis: number): Promise<string> {
  const client = new pg.Client({ connectionString, connectionTimeoutMillis })
  await client.connect()
  try {
    const res = await client.query<{ id: string }>(
      `select pg_postmaster_start_time()::text || '/' || (select oid from pg_database where datname = current_database())::text as id`,
    )
    return res.rows[0]?.id ?? ''
  } finally {
    await client.end()
  }
}

/** `preferLocalSocket` for a configured URL (none: PGlite), with the choice logged once. */
export async function chooseDatabaseUrl(
  databaseUrl: string | undefined,
  mode: DbSocketMode,
  logger: Logger,
  pool: 'ingest' | 'query',
): Promise<string | undefined> {
  if (databaseUrl === undefined) return undefined
  const choice = await preferLocalSocket(databaseUrl, { mode })
  logger.info({ pool, via: choice.via, [choice.via === 'socket' ? 'socketDir' : 'reason']: choice.detail }, 'database connection')
  return choice.url
}
