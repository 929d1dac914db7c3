import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Registry } from 'prom-client'
import { HttpServer } from '../../src/api/http-server.js'
import { Crawler } from '../../src/crawler/crawler.js'
import { registerCrawlRoutes } from '../../src/api/crawl-routes.js'
import { Sequencer } from '../../src/sequencer/sequencer.js'
import { XrpcError } from '../../src/atproto/xrpc-error.js'
import { createTestDatabase, type TestDatabase } from '../helpers/db.js'
import { FakeHost, newStats, RecordingSink, silentLogger } from './fake-host.js'
import { waitUntil } from '../helpers/wait.js'

let tdb: TestDatabase
let crawler: Crawler
let http: HttpServer
let base: string
const fakes: FakeHost[] = []

async function fake(): Promise<FakeHost> {
  const f = await FakeHost.start()
  fakes.push(f)
  return f
}

async function call(nsid: string, init: { method?: string; hostname?: unknown; query?: string } = {}) {
  const method = init.method ?? 'POST'
  const url = `${base}/xrpc/${nsid}${init.query ? `?${init.query}` : ''}`
  const res = await fetch(url, {
    method,
    ...(method === 'POST' ? { headers: { 'content-type': 'application/json' }, body: JSON.stringify({ hostname: init.hostname }) } : {}),
  })
  const text = await res.text()
  return { status: res.status, headers: res.headers, body: text ? (JSON.parse(text) as { error: string; message: string }) : undefined }
}

const requestCrawl = (hostname: unknown) => call('com.atproto.sync.requestCrawl', { hostname })

async function hostRow(hostname: string) {
  return tdb.storage.db.selectFrom('host').selectAll().where('hostname', '=', hostname).executeTakeFirst()
}

beforeAll(async () => {
  tdb = await createTestDatabase('postgres')
  const registry = new Registry()
  crawler = new Crawler({
    storage: tdb.storage,
    sink: new RecordingSink(),
    stats: newStats(),
    sequencer: new Sequencer({ storage: tdb.storage, initialSeq: 1, logger: silentLogger, registry }),
    allowInsecureHosts: true,
    trustedDomains: ['*.trusted.example'],
    defaultAccountLimit: 100,
    trustedAccountLimit: 5_000,
    newHostsPerDay: 50,
    disableRequestCrawl: false,
    futureCursorPolicy: 'reset',
    // Long enough that a reconnect within a test is requestCrawl's doing, not the timer's.
    backoff: { baseMs: 30_000, maxMs: 60_000 },
    describeTimeoutMs: 2_000,
    logger: silentLogger,
    registry,
  })
  await crawler.start()
  http = new HttpServer(silentLogger)
  registerCrawlRoutes(http, crawler.admission)
  const addr = await http.listen({ host: '127.0.0.1', port: 0 })
  base = `http://127.0.0.1:${addr.port}`
})

afterAll(async () => {
  await crawler?.stop()
  await http?.close()
  for (const f of fakes) await f.destroy()
  await tdb?.cleanup()
})

describe('requestCrawl over HTTP', () => {
  it('admits a new host, stores it and connects', async () => {
    const f = await fake()
    const res = await requestCrawl(`ws://${f.hostname}`)
    expect(res.status).toBe(200)
    const row = await hostRow(f.hostname)
    expect(row).toMatchObject({ hostname: f.hostname, ssl: false, status: 'active', account_limit: 100, trusted: false, cursor: 0 })
    const conn = await f.waitForConnections(1)
    expect(conn.cursor).toBeNull() // a new host starts live
    expect(conn.userAgent).toMatch(/atproto-relay/)
    expect(f.describeCalls).toBe(1)
    await waitUntil(() => crawler.connection(f.hostname)?.state === 'open', 'open connection', 10_000)
    const since = crawler.connection(f.hostname)?.connectedSince

    // idempotent: the same request again changes nothing and opens no second connection
    const again = await requestCrawl(f.hostname)
    expect(again.status).toBe(200)
    expect(await crawler.requestCrawl(f.hostname)).toEqual({ hostname: f.hostname, outcome: 'connected' })
    const rows = await tdb.storage.db.selectFrom('host').select('id').where('hostname', '=', f.hostname).execute()
    expect(rows).toHaveLength(1)
    // 'connected' is the answer for a host whose socket is open: nothing was redialled (a dial would
    // leave 'open' for 'connecting' and start a new connectedSince).
    expect(crawler.connection(f.hostname)).toMatchObject({ state: 'open', connectedSince: since })
    expect(f.connections).toHaveLength(1)
  })

  it('refuses a banned domain with HostBanned, before contacting it', async () => {
    await tdb.storage.db.insertInto('domain_ban').values({ domain: 'evil-pds.com' }).execute()
    const res = await requestCrawl('https://pds1.evil-pds.com')
    expect(res.status).toBe(400)
    expect(res.body?.error).toBe('HostBanned')
    expect(res.body?.message).toMatch(/evil-pds\.com/)
    expect(await hostRow('pds1.evil-pds.com')).toBeUndefined()
  })

  it('refuses a banned host', async () => {
    const f = await fake()
    await tdb.storage.db.insertInto('host').values({ hostname: f.hostname, ssl: false, account_limit: 100, status: 'banned' }).execute()
    const res = await requestCrawl(f.hostname)
    expect(res.status).toBe(400)
    expect(res.body?.error).toBe('HostBanned')
    expect(f.describeCalls).toBe(0)
    expect(f.connections).toHaveLength(0)
  })

  it('says why when describeServer fails', async () => {
    const f = await fake()
    f.describeStatus = 500
    const res = await requestCrawl(f.hostname)
    expect(res.status).toBe(502)
    expect(res.body?.error).toBe('UpstreamFailure')
    expect(res.body?.message).toMatch(/describeServer.*HTTP 500/)
    expect(await hostRow(f.hostname)).toBeUndefined()

    const other = await fake()
    other.describeStatus = 200
    other.describeBody = '<html>proxy error</html>'
    const notJson = await requestCrawl(other.hostname)
    expect(notJson.status).toBe(502)
    expect(notJson.body?.message).toMatch(/JSON/)

    const gone = await fake()
    const port = gone.port
    await gone.close()
    const refused = await requestCrawl(`localhost:${port}`)
    expect(refused.status).toBe(502)
    expect(refused.body?.message).toMatch(/ECONNREFUSED|failed/)
  })

  it('refuses a relay (loop) and marks it banned', async () => {
    const f = await fake()
    f.serverHeader = 'atrelay/9.9.9 (atproto-relay)'
    const res = await requestCrawl(f.hostname)
    expect(res.status).toBe(400)
    expect(res.body?.error).toBe('HostBanned')
    expect(res.body?.message).toMatch(/relay/)
    const row = await hostRow(f.hostname)
    expect(row?.status).toBe('banned')
    expect(row?.last_error).toMatch(/relay loop/)
    // and stays refused without another probe
    const again = await requestCrawl(f.hostname)
    expect(again.body?.error).toBe('HostBanned')
    expect(f.describeCalls).toBe(1)
    expect(f.connections).toHaveLength(0)
  })

  it('caps the stored last_error when a relay answers with a huge Server header', async () => {
    const f = await fake()
    f.serverHeader = `atrelay/9.9.9 (atproto-relay) ${'x'.repeat(5_000)}`
    expect((await requestCrawl(f.hostname)).body?.error).toBe('HostBanned')
    const row = await hostRow(f.hostname)
    expect(row?.last_error).toMatch(/^relay loop/)
    expect(row?.last_error?.length).toBe(1_000)
  })

  it('refuses bad and missing hostnames with InvalidRequest', async () => {
    for (const bad of ['1.2.3.4', 'pds', 'https://pds.example.com/xrpc', 'pds.example.com:8080', 42]) {
      const res = await requestCrawl(bad)
      expect(res.status, String(bad)).toBe(400)
      expect(res.body?.error).toBe('InvalidRequest')
    }
    const missing = await call('com.atproto.sync.requestCrawl', { hostname: undefined })
    expect(missing.status).toBe(400)
    expect(missing.body?.message).toMatch(/property "hostname"/)
  })

  it('limits new hosts per day with 429 and Retry-After; admins bypass; the limit changes at run time', async () => {
    const used = crawler.admission.newHostsWindow().used
    expect(used).toBeGreaterThan(0)
    crawler.admission.setNewHostsPerDay(used)
    try {
      const f = await fake()
      const res = await requestCrawl(f.hostname)
      expect(res.status).toBe(429)
      expect(res.body?.error).toBe('RateLimitExceeded')
      expect(Number(res.headers.get('retry-after'))).toBeGreaterThan(80_000)
      expect(await hostRow(f.hostname)).toBeUndefined()

      // an admin adds it anyway
      expect(await crawler.addHost(f.hostname)).toEqual({ hostname: f.hostname, outcome: 'added' })
      await f.waitForConnections(1)

      // raising the limit lets the public in again
      crawler.admission.setNewHostsPerDay(used + 1)
      const g = await fake()
      expect((await requestCrawl(g.hostname)).status).toBe(200)
      expect(crawler.admission.newHostsWindow()).toMatchObject({ limit: used + 1, used: used + 1 })
    } finally {
      crawler.admission.setNewHostsPerDay(50)
    }
  })

  it('answers 403 when public requestCrawl is disabled (admins still can)', async () => {
    crawler.admission.setDisableRequestCrawl(true)
    try {
      const f = await fake()
      const res = await requestCrawl(f.hostname)
      expect(res.status).toBe(403)
      expect(res.body?.error).toBe('Forbidden')
      expect(f.describeCalls).toBe(0)
      expect((await crawler.addHost(f.hostname)).outcome).toBe('added')
    } finally {
      crawler.admission.setDisableRequestCrawl(false)
    }
  })

  it('accepts the 2023 GET form and the notifyOfUpdate alias', async () => {
    const f = await fake()
    const get = await call('com.atproto.sync.requestCrawl', { method: 'GET', query: `hostname=${encodeURIComponent(f.hostname)}` })
    expect(get.status).toBe(200)
    expect((await hostRow(f.hostname))?.status).toBe('active')

    const g = await fake()
    const notify = await call('com.atproto.sync.notifyOfUpdate', { hostname: g.hostname })
    expect(notify.status).toBe(200)
    await g.waitForConnections(1)

    const h = await fake()
    const notifyGet = await call('com.atproto.sync.notifyOfUpdate', { method: 'GET', query: `hostname=${h.hostname}` })
    expect(notifyGet.status).toBe(200)
    await h.waitForConnections(1)
  })

  it('gives trusted hosts the trusted account limit', async () => {
    // Trusted names are real DNS names: check the limits admission would give, without dialing.
    expect(crawler.admission.limitsFor('pds.trusted.example')).toEqual({ trusted: true, accountLimit: 5_000 })
    expect(crawler.admission.limitsFor('pds.other.example')).toEqual({ trusted: false, accountLimit: 100 })
  })

  it('reconnects a known offline host at once instead of waiting for its backoff', async () => {
    const f = await fake()
    expect((await requestCrawl(f.hostname)).status).toBe(200)
    await f.waitForConnections(1)
    await f.close()
    await waitUntil(() => crawler.connection(f.hostname)?.state === 'backoff', 'backoff', 3_000)
    await waitUntil(async () => (await hostRow(f.hostname))?.status === 'offline', 'offline status', 3_000)
    const info = crawler.connection(f.hostname)
    expect(Date.parse(info?.nextRetryAt ?? '')).toBeGreaterThan(Date.now())
    await f.reopen()
    const result = await crawler.requestCrawl(f.hostname)
    expect(result.outcome).toBe('reconnecting')
    await f.waitForConnections(2, 3_000)
    await waitUntil(async () => (await hostRow(f.hostname))?.status === 'active', 'active status', 3_000)
  })

  it('answers a name that failed recently from memory: same error, Retry-After, no new probe; admins still probe', async () => {
    const f = await fake()
    f.describeStatus = 500
    expect((await requestCrawl(f.hostname)).status).toBe(502)
    expect(f.describeCalls).toBe(1)
    f.describeStatus = 200
    for (let i = 0; i < 3; i++) {
      const again = await requestCrawl(f.hostname)
      expect(again.status).toBe(502)
      expect(again.body?.error).toBe('UpstreamFailure')
      expect(again.body?.message).toMatch(/HTTP 500.*remembered/)
      expect(Number(again.headers.get('retry-after'))).toBeGreaterThan(0)
    }
    expect(f.describeCalls).toBe(1)
    const invalid = await requestCrawl('not a host')
    expect(invalid.status).toBe(400)
    expect((await requestCrawl('not a host')).body?.message).toMatch(/remembered/)

    // The admin path always probes, and its success clears the memory.
    expect((await crawler.requestCrawl(f.hostname, { admin: true })).outcome).toBe('added')
    expect(f.describeCalls).toBe(2)
    expect((await requestCrawl(f.hostname)).status).toBe(200)
  })

  it('probes a known host at most once per interval; within it requestCrawl just wakes it', async () => {
    const f = await fake()
    expect((await requestCrawl(f.hostname)).status).toBe(200)
    await f.waitForConnections(1)
    for (let i = 0; i < 5; i++) expect((await requestCrawl(f.hostname)).status).toBe(200)
    expect(f.describeCalls).toBe(1)
  })

  it('throws XrpcError from the programmatic API too', async () => {
    await expect(crawler.requestCrawl('not a host')).rejects.toBeInstanceOf(XrpcError)
  })
})
