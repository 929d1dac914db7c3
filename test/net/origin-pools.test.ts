/**
 * OriginPools, the guarded dispatcher's pool per origin: a pool goes away when it has no
 * connection left (idle, refused) and their number is capped, while one origin's requests still
 * share connections. Real HTTP servers on loopback; every port is an origin of its own.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { request } from 'undici'
import { afterEach, describe, expect, it } from 'vitest'
import { OriginPools } from '../../src/net/origin-pools.js'
import { waitUntil } from '../helpers/wait.js'

interface TestServer {
  origin: string
  connections: number
  server: Server
}

const servers: TestServer[] = []
const dispatchers: OriginPools[] = []

async function startServer(handler: (req: IncomingMessage, res: ServerResponse) => void = (_req, res) => res.end('ok')): Promise<TestServer> {
  const server = createServer(handler)
  const s: TestServer = { origin: '', connections: 0, server }
  server.on('connection', () => s.connections++)
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  s.origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  servers.push(s)
  return s
}

function pools(connections: number, maxOrigins: number, keepAliveTimeout = 60_000): OriginPools {
  const d = new OriginPools({ pool: { connections, keepAliveTimeout, keepAliveTimeoutThreshold: 0 }, maxOrigins })
  dispatchers.push(d)
  return d
}

async function get(dispatcher: OriginPools, origin: string): Promise<string> {
  const res = await request(`${origin}/x`, { dispatcher })
  return `${res.statusCode} ${await res.body.text()}`
}

afterEach(async () => {
  await Promise.all(dispatchers.splice(0).map((d) => d.destroy()))
  await Promise.all(servers.splice(0).map((s) => new Promise<void>((resolve) => s.server.close(() => resolve()))))
})

// 1: a single Client per origin (handles, did:web); 2: a Pool.
describe.each([1, 2])('OriginPools, %i connection(s) per origin', (connections) => {
  it('keeps at most maxOrigins pools over many origins, and every request is answered', async () => {
    const many = await Promise.all(Array.from({ length: 12 }, () => startServer()))
    const d = pools(connections, 4)
    for (const s of many) {
      expect(await get(d, s.origin)).toBe('200 ok')
      expect(d.origins).toBeLessThanOrEqual(4)
    }
    expect(d.origins).toBe(4)
  })

  it('drops a pool once its connections have gone idle and closed', async () => {
    const a = await startServer()
    const b = await startServer()
    const d = pools(connections, 100, 200)
    expect(await get(d, a.origin)).toBe('200 ok')
    expect(await get(d, b.origin)).toBe('200 ok')
    expect(d.origins).toBe(2)
    await waitUntil(() => d.origins === 0, 'idle pools dropped after the keep-alive timeout')
    // The origin works again afterwards, through a new pool.
    expect(await get(d, a.origin)).toBe('200 ok')
    expect(d.origins).toBe(1)
  })

  it('drops the pool of an origin that refuses connections', async () => {
    const gone = await startServer()
    await new Promise<void>((resolve) => gone.server.close(() => resolve()))
    servers.splice(servers.indexOf(gone), 1)
    const d = pools(connections, 100)
    await expect(get(d, gone.origin)).rejects.toThrow(/ECONNREFUSED/)
    await waitUntil(() => d.origins === 0, 'the refused origin’s pool dropped')
  })

  it('lets a request in flight finish when its pool is pushed out by the cap', async () => {
    let release!: () => void
    const released = new Promise<void>((resolve) => (release = resolve))
    const slow = await startServer((_req, res) => void released.then(() => res.end('late')))
    const other = await startServer()
    const d = pools(connections, 1)
    const inFlight = get(d, slow.origin)
    await waitUntil(() => slow.connections === 1, 'the slow request connected')
    expect(await get(d, other.origin)).toBe('200 ok')
    expect(d.origins).toBe(1)
    release()
    expect(await inFlight).toBe('200 late')
  })

  it('reuses one origin’s connection across requests', async () => {
    const s = await startServer()
    const d = pools(connections, 4)
    for (let i = 0; i < 10; i++) expect(await get(d, s.origin)).toBe('200 ok')
    // Ten requests over at most the pool's connections (a second when the next request comes
    // before the first connection is marked free).
    expect(s.connections).toBeLessThanOrEqual(connections)
    expect(d.origins).toBe(1)
  })

  it('refuses requests after close', async () => {
    const s = await startServer()
    const d = pools(connections, 4)
    expect(await get(d, s.origin)).toBe('200 ok')
    await d.close()
    expect(d.origins).toBe(0)
    await expect(get(d, s.origin)).rejects.toThrow(/closed/)
  })
})
