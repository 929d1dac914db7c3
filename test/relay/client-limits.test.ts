/**
 * Per-client limits on the whole relay (real HTTP and WebSockets on loopback):
 * clients are told apart by the trusted proxy header (right-most address),
 * over-limit requests get 429 RateLimitExceeded with the RateLimit-* headers
 * and Retry-After, and loopback and admin requests are not limited. Limits are
 * tiny and windows an hour long, so nothing depends on machine speed.
 */
import { request, type ClientRequest, type IncomingMessage } from 'node:http'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import WebSocket from 'ws'
import type { Relay } from '../../src/relay.js'
import { createPostgresDatabase } from '../helpers/db.js'
import { LoopbackPlc } from '../helpers/loopback-plc.js'
import { apiUrl, startTestRelay, TEST_ADMIN_PASSWORD } from '../helpers/relay.js'
import { waitUntil } from '../helpers/wait.js'

let drop: () => Promise<void>
let plc: LoopbackPlc
let relay: Relay
const sockets: WebSocket[] = []

beforeAll(async () => {
  const db = await createPostgresDatabase()
  drop = db.drop
  plc = await LoopbackPlc.start()
  relay = await startTestRelay({
    databaseUrl: db.url,
    plcUrl: plc.url,
    env: {
      RELAY_CLIENT_IP_HEADER: 'X-Forwarded-For',
      RELAY_CLIENT_RATE_LIMIT: '5',
      RELAY_CLIENT_RATE_WINDOW: '1h',
      RELAY_CLIENT_CONCURRENCY: '2',
      RELAY_FIREHOSE_CONNECTIONS_PER_CLIENT: '2',
      RELAY_CRAWL_RATE_LIMIT: '2',
    },
  })
}, 60_000)

afterAll(async () => {
  for (const ws of sockets) ws.terminate()
  await relay?.stop()
  await plc?.close()
  await drop?.()
})

async function get(path: string, headers: Record<string, string> = {}) {
  const res = await fetch(apiUrl(relay, path), { headers })
  const text = await res.text()
  return { status: res.status, headers: res.headers, body: text ? (JSON.parse(text) as { error?: string; message?: string }) : {} }
}

const from = (...chain: string[]) => ({ 'x-forwarded-for': chain.join(', ') })

async function refusals(limit: string, route: string): Promise<number> {
  const metric = await relay.registry.getSingleMetric('relay_api_refusals_total')?.get()
  return metric?.values.find((v) => v.labels.limit === limit && v.labels.route === route)?.value ?? 0
}

describe('per-client request rate', () => {
  it('answers 429 with RateLimit-* and Retry-After past the budget; the right-most proxy address is the client', async () => {
    const client = from('198.51.100.7', '203.0.113.1')
    for (let i = 0; i < 5; i++) {
      const ok = await get('/xrpc/com.atproto.sync.listHosts', client)
      expect(ok.status).toBe(200)
      expect(ok.headers.get('ratelimit-limit')).toBe('5')
      expect(ok.headers.get('ratelimit-remaining')).toBe(String(4 - i))
      expect(ok.headers.get('ratelimit-policy')).toBe('5;w=3600')
    }
    const limited = await get('/xrpc/com.atproto.sync.listHosts', client)
    expect(limited.status).toBe(429)
    expect(limited.body.error).toBe('RateLimitExceeded')
    expect(limited.headers.get('ratelimit-remaining')).toBe('0')
    expect(Number(limited.headers.get('ratelimit-reset'))).toBeGreaterThan(Date.now() / 1000)
    expect(Number(limited.headers.get('retry-after'))).toBeGreaterThan(0)
    expect(limited.headers.get('access-control-expose-headers')).toMatch(/RateLimit-Remaining.*Retry-After/)

    // Whatever the client puts on the left, the proxy's right-most entry decides.
    expect((await get('/xrpc/com.atproto.sync.listHosts', from('10.9.8.7', '203.0.113.1'))).status).toBe(429)
    // Another client behind the same proxy has its own budget.
    expect((await get('/xrpc/com.atproto.sync.listHosts', from('198.51.100.7', '203.0.113.2'))).status).toBe(200)
    // Loopback without the header (a tool on the relay's machine) and admins are not limited.
    const local = await get('/xrpc/com.atproto.sync.listHosts')
    expect(local.status).toBe(200)
    expect(local.headers.get('ratelimit-limit')).toBeNull()
    const admin = { ...client, authorization: `Basic ${Buffer.from(`admin:${TEST_ADMIN_PASSWORD}`).toString('base64')}` }
    expect((await get('/xrpc/com.atproto.sync.listHosts', admin)).status).toBe(200)
    expect(await refusals('client_rate', 'com.atproto.sync.listHosts')).toBe(2)
  })

  it('counts an IPv6 client by its /64', async () => {
    for (let i = 0; i < 5; i++) expect((await get('/xrpc/com.atproto.sync.listHosts', from('2001:db8:1:2::1'))).status).toBe(200)
    expect((await get('/xrpc/com.atproto.sync.listHosts', from('2001:db8:1:2:ffff::9'))).status).toBe(429)
    expect((await get('/xrpc/com.atproto.sync.listHosts', from('2001:db8:1:3::1'))).status).toBe(200)
  })
})

describe('per-client concurrency', () => {
  /** A requestCrawl whose body is not finished: the relay has admitted it and waits for the rest. */
  function heldRequest(ip: string): { finish(): void; done: Promise<number> } {
    const body = JSON.stringify({ hostname: 'held.example.test' })
    let req!: ClientRequest
    const done = new Promise<number>((resolve, reject) => {
      req = request(
        apiUrl(relay, '/xrpc/com.atproto.sync.requestCrawl'),
        { method: 'POST', agent: false, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), ...from(ip) } },
        (res: IncomingMessage) => {
          res.resume()
          res.on('end', () => resolve(res.statusCode ?? 0))
        },
      )
      req.on('error', reject)
    })
    req.write(body.slice(0, 5))
    return { finish: () => req.end(body.slice(5)), done }
  }

  it('refuses a request beyond the in-progress bound with 429; frees the slot when one finishes', async () => {
    const ip = '203.0.113.3'
    const held = [heldRequest(ip), heldRequest(ip)]
    await waitUntil(() => relay.clientLimits.usageOf(ip).inFlight === 2, 'both held requests admitted')
    const third = await get('/xrpc/com.atproto.sync.listHosts', from(ip))
    expect(third.status).toBe(429)
    expect(third.body.message).toMatch(/in progress/)
    expect(Number(third.headers.get('retry-after'))).toBeGreaterThan(0)
    expect((await get('/xrpc/com.atproto.sync.listHosts', from('203.0.113.33'))).status).toBe(200)

    for (const h of held) h.finish()
    // The held requestCrawls end with the relay's answer about their (unresolvable) name.
    for (const h of held) expect(await h.done).toBe(502)
    await waitUntil(() => relay.clientLimits.usageOf(ip).inFlight === 0, 'slots released')
    expect((await get('/xrpc/com.atproto.sync.listHosts', from(ip))).status).toBe(200)
    expect(await refusals('client_concurrency', 'com.atproto.sync.listHosts')).toBe(1)
  })
})

describe('requestCrawl per client', () => {
  it('limits requestCrawl calls per client with 429 and its own policy', async () => {
    const crawl = (ip: string) =>
      fetch(apiUrl(relay, '/xrpc/com.atproto.sync.requestCrawl'), {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...from(ip) },
        body: JSON.stringify({ hostname: 'not a hostname' }),
      })
    expect((await crawl('203.0.113.4')).status).toBe(400)
    expect((await crawl('203.0.113.4')).status).toBe(400)
    const limited = await crawl('203.0.113.4')
    expect(limited.status).toBe(429)
    expect(((await limited.json()) as { error: string }).error).toBe('RateLimitExceeded')
    expect(limited.headers.get('ratelimit-policy')).toBe('2;w=3600')
    expect(Number(limited.headers.get('retry-after'))).toBeGreaterThan(0)
    expect((await crawl('203.0.113.44')).status).toBe(400)
    expect(await refusals('crawl_rate', 'com.atproto.sync.requestCrawl')).toBe(1)
  })
})

describe('firehose connections per client', () => {
  type Outcome = { open: true; ws: WebSocket } | { open: false; status: number; headers: IncomingMessage['headers']; body: string }

  function subscribe(headers: Record<string, string> = {}): Promise<Outcome> {
    const ws = new WebSocket(`ws://127.0.0.1:${relay.apiAddress.port}/xrpc/com.atproto.sync.subscribeRepos`, { headers, perMessageDeflate: false })
    sockets.push(ws)
    return new Promise((resolve, reject) => {
      ws.once('open', () => resolve({ open: true, ws }))
      ws.once('unexpected-response', (_req, res) => {
        let body = ''
        res.on('data', (c: Buffer) => (body += c.toString('utf8')))
        res.on('end', () => resolve({ open: false, status: res.statusCode ?? 0, headers: res.headers, body }))
      })
      ws.once('error', (err) => {
        if (!/Unexpected server response/.test(err.message)) reject(err)
      })
    })
  }

  it('answers 429 on the upgrade past the bound, counts clients apart, and frees a slot when a consumer leaves', async () => {
    const ip = '203.0.113.5'
    const first = await subscribe(from(ip))
    const second = await subscribe(from(ip))
    expect(first.open && second.open).toBe(true)
    const third = await subscribe(from(ip))
    expect(third.open).toBe(false)
    if (third.open) return
    expect(third.status).toBe(429)
    expect(JSON.parse(third.body)).toMatchObject({ error: 'RateLimitExceeded' })
    expect(third.headers['ratelimit-limit']).toBe('2')
    expect(third.headers['ratelimit-remaining']).toBe('0')
    expect(Number(third.headers['retry-after'])).toBeGreaterThan(0)

    expect((await subscribe(from('203.0.113.6'))).open).toBe(true)
    expect((await subscribe()).open).toBe(true) // loopback, no header
    expect(await refusals('firehose_connections', 'com.atproto.sync.subscribeRepos')).toBe(1)

    if (first.open) first.ws.close()
    await waitUntil(() => relay.clientLimits.usageOf(ip).firehose === 1, 'the closed consumer to free its slot')
    expect((await subscribe(from(ip))).open).toBe(true)
  })
})
