/**
 * RELAY_DB_SOCKET=auto: a loopback DATABASE_URL moves to the same server's Unix
 * socket only when the socket answers as the same server and database.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { createServer, type Server } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pg from 'pg'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { preferLocalSocket } from '../../src/storage/local-socket.js'
import { createPostgresDatabase } from '../helpers/db.js'

let db: { url: string; drop: () => Promise<void> }
let port: string
/** Where this server keeps its sockets (empty when it listens on TCP only). */
let serverSocketDirs: string[]
const scratch = mkdtempSync(join(tmpdir(), 'atrelay-socket-'))

async function one<T>(url: string, sql: string): Promise<T> {
  const client = new pg.Client({ connectionString: url })
  await client.connect()
  try {
    return (await client.query(sql)).rows[0] as T
  } finally {
    await client.end()
  }
}

beforeAll(async () => {
  db = await createPostgresDatabase()
  port = new URL(db.url).port || '5432'
  const { dirs } = await one<{ dirs: string }>(db.url, `select current_setting('unix_socket_directories') as dirs`)
  serverSocketDirs = dirs
    .split(',')
    .map((d) => d.trim())
    .filter((d) => d.startsWith('/'))
})

afterAll(async () => {
  await db.drop()
  rmSync(scratch, { recursive: true, force: true })
})

/**
 * A stand-in that speaks just enough of the PostgreSQL wire protocol (trust
 * start-up, one simple query) to answer the identity probe as another server would.
 */
function fakePostgres(row: string[]): Server {
  const message = (type: string, body: Buffer): Buffer => {
    const head = Buffer.alloc(5)
    head.write(type, 0, 'latin1')
    head.writeInt32BE(body.length + 4, 1)
    return Buffer.concat([head, body])
  }
  const int32 = (n: number) => {
    const b = Buffer.alloc(4)
    b.writeInt32BE(n)
    return b
  }
  const int16 = (n: number) => {
    const b = Buffer.alloc(2)
    b.writeInt16BE(n)
    return b
  }
  const ready = message('Z', Buffer.from('I'))
  return createServer((socket) => {
    let started = false
    let pending = Buffer.alloc(0)
    socket.on('data', (chunk) => {
      pending = Buffer.concat([pending, chunk])
      for (;;) {
        if (!started) {
          if (pending.length < 4 || pending.length < pending.readInt32BE(0)) return
          pending = pending.subarray(pending.readInt32BE(0))
          started = true
          socket.write(Buffer.concat([message('R', int32(0)), ready]))
          continue
        }
        if (pending.length < 5 || pending.length < 1 + pending.readInt32BE(1)) return
        const type = String.fromCharCode(pending[0]!)
        pending = pending.subarray(1 + pending.readInt32BE(1))
        if (type === 'X') return void socket.end()
        if (type !== 'Q') continue
        const fields = row.map((_, i) => Buffer.concat([Buffer.from(`c${i}\0`), int32(0), int16(0), int32(25), int16(-1), int32(-1), int16(0)]))
        const cells = row.map((v) => Buffer.concat([int32(Buffer.byteLength(v)), Buffer.from(v)]))
        socket.write(
          Buffer.concat([
            message('T', Buffer.concat([int16(row.length), ...fields])),
            message('D', Buffer.concat([int16(row.length), ...cells])),
            message('C', Buffer.from('SELECT 1\0')),
            ready,
          ]),
        )
      }
    })
    socket.on('error', () => undefined)
  })
}

describe('preferLocalSocket', () => {
  it('moves a loopback URL to the server’s own socket, and the connection really is a socket', async () => {
    const choice = await preferLocalSocket(db.url, { mode: 'auto', dirs: [join(scratch, 'missing'), ...serverSocketDirs] })
    if (serverSocketDirs.length === 0) {
      // A server without Unix sockets: TCP is kept, and the reason says so.
      expect(choice).toEqual({ url: db.url, via: 'tcp', detail: `no .s.PGSQL.${port} socket found` })
      return
    }
    expect(choice.via).toBe('socket')
    expect(serverSocketDirs).toContain(choice.detail)
    expect(new URL(choice.url).searchParams.get('host')).toBe(choice.detail)
    // inet_server_addr() is null exactly when the connection is not over TCP/IP.
    const over = await one<{ addr: string | null; db: string }>(choice.url, 'select inet_server_addr()::text as addr, current_database() as db')
    expect(over).toEqual({ addr: null, db: new URL(db.url).pathname.slice(1) })
    // Left to itself it searches only the directories the server reports, and finds the same socket.
    expect(await preferLocalSocket(db.url, { mode: 'auto' })).toEqual({ ...choice, detail: serverSocketDirs[0] })
  })

  it('keeps TCP when switched off, for a non-loopback host, and for a URL that names its own host', async () => {
    expect(await preferLocalSocket(db.url, { mode: 'off', dirs: serverSocketDirs })).toEqual({ url: db.url, via: 'tcp', detail: 'RELAY_DB_SOCKET=off' })
    // Decided from the URL alone: nothing is resolved or connected.
    const remote = 'postgres://relay@db.example.test:5432/relay'
    expect(await preferLocalSocket(remote, { mode: 'auto' })).toEqual({ url: remote, via: 'tcp', detail: 'db.example.test is not a loopback address' })
    const own = `${db.url}?host=/nowhere`
    expect(await preferLocalSocket(own, { mode: 'auto', dirs: serverSocketDirs })).toEqual({ url: own, via: 'tcp', detail: 'the URL names its host in ?host=' })
  })

  it('keeps TCP when the only candidate is not a socket', async () => {
    const dir = mkdtempSync(join(scratch, 'file-'))
    writeFileSync(join(dir, `.s.PGSQL.${port}`), 'not a socket')
    expect(await preferLocalSocket(db.url, { mode: 'auto', dirs: [dir] })).toEqual({ url: db.url, via: 'tcp', detail: `no .s.PGSQL.${port} socket found` })
  })

  it('keeps TCP, saying why, when the socket found does not answer as Postgres', async () => {
    const dir = mkdtempSync(join(scratch, 'refusing-'))
    const server: Server = createServer((socket) => socket.destroy())
    await new Promise<void>((resolve) => server.listen(join(dir, `.s.PGSQL.${port}`), resolve))
    try {
      const choice = await preferLocalSocket(db.url, { mode: 'auto', dirs: [dir], connectTimeoutMs: 2_000 })
      expect(choice.via).toBe('tcp')
      expect(choice.url).toBe(db.url)
      expect(choice.detail).toMatch(new RegExp(`^the socket in ${dir} refused: `))
    } finally {
      await new Promise<void>((resolve) => server.close(() => resolve()))
    }
  })

  it('keeps TCP when the socket answers as another server', async () => {
    const dir = mkdtempSync(join(scratch, 'other-'))
    const server = fakePostgres(['2020-01-01 00:00:00+00/1', ''])
    await new Promise<void>((resolve) => server.listen(join(dir, `.s.PGSQL.${port}`), resolve))
    try {
      const choice = await preferLocalSocket(db.url, { mode: 'auto', dirs: [dir], connectTimeoutMs: 2_000 })
      expect(choice).toEqual({ url: db.url, via: 'tcp', detail: `the socket in ${dir} leads to another server or database` })
    } finally {
      await new Promise<void>((resolve) => server.close(() => resolve()))
    }
  })
})
