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
 * owns the socket, and a world-writable directory such as /tmp could hold a
 * socket planted by another user. So only the directories the server itself
 * reports (`unix_socket_directories`, asked over TCP) are used, and both paths
 * are asked who they are (postmaster start time and the database's oid); any
 * difference, or any failure over the socket (its pg_hba rules often differ:
 * peer vs password), keeps TCP and says why.
 */
import { stat } from 'node:fs/promises'
import { join } from 'node:path'
import pg from 'pg'
import type { Logger } from 'pino'

export type DbSocketMode = 'auto' | 'off'

const LOOPBACK = new Set(['localhost', '127.0.0.1', '[::1]', '::1'])

export interface DbConnectionChoice {
  url: string
  via: 'socket' | 'tcp'
  /** The socket directory used, or why TCP was kept. */
  detail: string
}

export interface LocalSocketOptions {
  mode: DbSocketMode
  /** Tests: directories searched for `.s.PGSQL.<port>` instead of those the server reports. */
  dirs?: string[]
  /** Connecting and each query over either path (default 5 s): a socket that accepts and goes silent cannot hold up start-up. */
  connectTimeoutMs?: number
}

export async function preferLocalSocket(databaseUrl: string, opts: LocalSocketOptions): Promise<DbConnectionChoice> {
  const tcp = (detail: string): DbConnectionChoice => ({ url: databaseUrl, via: 'tcp', detail })
  if (opts.mode === 'off') return tcp('RELAY_DB_SOCKET=off')
  const url = new URL(databaseUrl)
  if (url.searchParams.has('host')) return tcp('the URL names its host in ?host=')
  if (!LOOPBACK.has(url.hostname)) return tcp(`${url.hostname} is not a loopback address`)
  const port = url.port || '5432'
  const timeout = opts.connectTimeoutMs ?? 5_000
  // TCP first: a failure there is the relay's own start-up error, reported as it always was.
  const overTcp = await serverIdentity(databaseUrl, timeout)
  const dir = await findSocketDir(opts.dirs ?? overTcp.socketDirs, port)
  if (dir === undefined) return tcp(`no .s.PGSQL.${port} socket found`)
  const socketUrl = new URL(databaseUrl)
  socketUrl.searchParams.set('host', dir)
  let overSocket: ServerIdentity
  try {
    overSocket = await serverIdentity(socketUrl.toString(), timeout)
  } catch (err) {
    return tcp(`the socket in ${dir} refused: ${(err as Error).message}`)
  }
  if (overSocket.id !== overTcp.id) return tcp(`the socket in ${dir} leads to another server or database`)
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

interface ServerIdentity {
  /** The server's start time and the database's oid: equal only for the same database of the same running server. */
  id: string
  /** Where the server says it keeps its sockets (absolute paths only; `@abstract` names are not files). */
  socketDirs: string[]
}

async function serverIdentity(connectionString: string, timeoutMs: number): Promise<ServerIdentity> {
  const client = new pg.Client({ connectionString, connectionTimeoutMillis: timeoutMs, query_timeout: timeoutMs })
  await client.connect()
  try {
    const res = await client.query<{ id: string; dirs: string }>(
      `select pg_postmaster_start_time()::text || '/' || (select oid from pg_database where datname = current_database())::text as id,` +
        ` current_setting('unix_socket_directories') as dirs`,
    )
    const row = res.rows[0]
    return {
      id: row?.id ?? '',
      socketDirs: (row?.dirs ?? '')
        .split(',')
        .map((d) => d.trim())
        .filter((d) => d.startsWith('/')),
    }
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
