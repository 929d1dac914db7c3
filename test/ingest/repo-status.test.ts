import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createRepoStatusCheck } from '../../src/ingest/repo-status.js'
import type { UpstreamHost } from '../../src/ingest/types.js'
import { silentLogger } from './harness.js'

const DID = 'did:plc:ewvi7nxzyoun6zhxrhs64oiz'
let server: Server
let host: UpstreamHost
const requests: string[] = []
let reply: { status: number; body: string } = { status: 200, body: JSON.stringify({ did: DID, active: true }) }

beforeAll(async () => {
  server = createServer((req, res) => {
    requests.push(req.url ?? '')
    res.writeHead(reply.status, { 'content-type': 'application/json' })
    res.end(reply.body)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as AddressInfo).port
  host = { id: 1, hostname: `localhost:${port}`, ssl: false, accountLimit: 10, lenient: null, trusted: false }
})
afterAll(async () => {
  await new Promise<void>((resolve) => server.close(() => resolve()))
})

describe('getRepoStatus re-check', () => {
  it('asks the host and parses its answer', async () => {
    const check = createRepoStatusCheck({ allowInsecure: true, logger: silentLogger })
    expect(await check(host, DID)).toEqual({ active: true })
    expect(requests.at(-1)).toBe(`/xrpc/com.atproto.sync.getRepoStatus?did=${encodeURIComponent(DID)}`)
    reply = { status: 200, body: JSON.stringify({ did: DID, active: false, status: 'deactivated' }) }
    expect(await check(host, DID)).toEqual({ active: false, status: 'deactivated' })
  })

  it('returns null for errors, other DIDs and junk', async () => {
    const check = createRepoStatusCheck({ allowInsecure: true, logger: silentLogger })
    reply = { status: 400, body: JSON.stringify({ error: 'RepoNotFound' }) }
    expect(await check(host, DID)).toBeNull()
    reply = { status: 200, body: JSON.stringify({ did: 'did:plc:someoneelse', active: true }) }
    expect(await check(host, DID)).toBeNull()
    reply = { status: 200, body: 'not json' }
    expect(await check(host, DID)).toBeNull()
  })

  it('refuses loopback hosts unless insecure hosts are allowed', async () => {
    const before = requests.length
    const check = createRepoStatusCheck({ allowInsecure: false, logger: silentLogger })
    expect(await check({ ...host, ssl: true }, DID)).toBeNull()
    expect(await check(host, DID)).toBeNull()
    expect(requests.length).toBe(before)
  })

  it('skips checks beyond the per-host budget instead of waiting', async () => {
    reply = { status: 200, body: JSON.stringify({ did: DID, active: true }) }
    const check = createRepoStatusCheck({ allowInsecure: true, logger: silentLogger, perHostRate: { ratePerSec: 0.001, burst: 2 } })
    const before = requests.length
    const results = [await check(host, DID), await check(host, DID), await check(host, DID)]
    expect(results).toEqual([{ active: true }, { active: true }, null])
    expect(requests.length - before).toBe(2)
  })
})
