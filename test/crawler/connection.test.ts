import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { pino } from 'pino'
import { Registry } from 'prom-client'
import { encodeErrorFrame, encodeInfoFrame, encodeMessageFrame } from '../../src/atproto/frame.js'
import { Crawler, type CrawlerOptions } from '../../src/crawler/crawler.js'
import type { HostStats } from '../../src/stats/host-stats.js'
import { Sequencer } from '../../src/sequencer/sequencer.js'
import type { HostStatus } from '../../src/storage/types.js'
import { createTestDatabase, type TestDatabase } from '../helpers/db.js'
import { eventFrame, FakeHost, newStats, RecordingSink, silentLogger, TEST_CRAWLER_SETTINGS } from './fake-host.js'
import { waitUntil } from '../helpers/wait.js'

let tdb: TestDatabase
const cleanups: (() => Promise<void>)[] = []

beforeAll(async () => {
  tdb = await createTestDatabase('postgres')
})
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c()
  // Each test starts from an empty host table: later crawlers must not dial earlier tests' hosts.
  await tdb.storage.db.deleteFrom('host').execute()
})
afterAll(async () => {
  await tdb?.cleanup()
})

interface Harness {
  crawler: Crawler
  sink: RecordingSink
  stats: HostStats
  registry: Registry
  resets: number[]
}

function harness(overrides: Partial<CrawlerOptions> = {}): Harness {
  const registry = new Registry()
  const sink = new RecordingSink()
  const stats = newStats()
  const sequencer = new Sequencer({ storage: tdb.storage, initialSeq: 1, logger: silentLogger, registry })
  const resets: number[] = []
  const crawler = new Crawler({
    storage: tdb.storage,
    sink,
    stats,
    sequencer: {
      hostCursor: (id) => sequencer.hostCursor(id),
      openTicket: (id, seq) => sequencer.openTicket(id, seq),
      resetHost: (id) => {
        resets.push(id)
        sequencer.resetHost(id)
      },
    },
    ...TEST_CRAWLER_SETTINGS,
    registry,
    ...overrides,
  })
  cleanups.push(() => crawler.stop())
  return { crawler, sink, stats, registry, resets }
}

async function fake(): Promise<FakeHost> {
  const f = await FakeHost.start()
  cleanups.push(() => f.destroy())
  return f
}

async function insertHost(hostname: string, fields: { cursor?: number; status?: HostStatus; account_limit?: number } = {}): Promise<number> {
  const row = await tdb.storage.db
    .insertInto('host')
    .values({ hostname, ssl: false, account_limit: fields.account_limit ?? 100_000, cursor: fields.cursor ?? 0, status: fields.status ?? 'active' })
    .returning('id')
    .executeTakeFirstOrThrow()
  return row.id
}

async function hostRow(hostname: string) {
  return tdb.storage.db.selectFrom('host').selectAll().where('hostname', '=', hostname).executeTakeFirstOrThrow()
}

async function metric(registry: Registry, name: string): Promise<number> {
  const m = (await registry.getMetricsAsJSON()).find((x) => x.name === name)
  return (m?.values ?? []).reduce((sum, v) => sum + Number(v.value), 0)
}

describe('host connection', () => {
  it('resumes from the stored cursor and hands frames to ingest in order', async () => {
    const f = await fake()
    f.onConnection = ({ ws }) => {
      ws.send(eventFrame(43, '#commit'))
      ws.send(eventFrame(44, '#identity'))
    }
    await insertHost(f.hostname, { cursor: 42 })
    const h = harness()
    await h.crawler.start()
    const conn = await f.waitForConnections(1)
    expect(conn.cursor).toBe('42')
    expect(conn.userAgent).toMatch(/^atrelay\/.+\(atproto-relay\)$/)
    await waitUntil(() => h.sink.received.length === 2, 'h.sink.received.length === 2')
    expect(h.sink.received).toEqual([
      { hostname: f.hostname, t: '#commit', seq: 43 },
      { hostname: f.hostname, t: '#identity', seq: 44 },
    ])
    const info = h.crawler.connection(f.hostname)
    expect(info).toMatchObject({ state: 'open', status: 'active', cursor: 44, attempt: 0, heldBack: null })
    expect(info?.connectedSince).not.toBeNull()
    expect(await metric(h.registry, 'relay_upstream_connected_hosts')).toBe(1)
    expect(await metric(h.registry, 'relay_upstream_bytes_total')).toBeGreaterThan(0)
  })

  it('drops seqs that do not increase, forwards unknown types, never forwards #info (counted as info)', async () => {
    const f = await fake()
    f.onConnection = ({ ws }) => {
      ws.send(encodeInfoFrame('OutdatedCursor', 'too old'))
      for (const seq of [5, 6, 6, 4, 7]) ws.send(eventFrame(seq))
      ws.send(encodeMessageFrame('#somethingNew', { seq: 8 }))
      ws.send(encodeMessageFrame('#handle', { seq: 9, did: 'did:plc:x', handle: 'a.b' }))
      // A marker last: frames are handled in order, so once it arrives every frame before it was forwarded or dropped.
      ws.send(eventFrame(10))
    }
    await insertHost(f.hostname)
    const h = harness()
    await h.crawler.start()
    await waitUntil(() => h.sink.received.some((r) => r.seq === 10), 'the marker (seq 10)', 10_000)
    expect(h.sink.received.map((r) => [r.t, r.seq])).toEqual([
      ['#identity', 5],
      ['#identity', 6],
      ['#identity', 7],
      ['#somethingNew', 8],
      ['#handle', 9],
      ['#identity', 10],
    ])
    expect(h.stats.snapshot(f.hostname).dropped).toEqual({ info: 1, 'seq-not-increasing': 2 })
    expect(f.connections).toHaveLength(1) // a bad seq drops the frame, not the connection
  })

  it('drops an event without a positive integer seq as bad-frame and keeps the connection', async () => {
    const f = await fake()
    const body = { did: 'did:plc:abc', time: '2024-01-01T00:00:00.000Z' }
    f.onConnection = ({ ws }) => {
      ws.send(eventFrame(5))
      // A fraction, none, zero, negative, a string: none can be a host cursor.
      for (const seq of [5.5, undefined, 0, -3, '6']) ws.send(encodeMessageFrame('#identity', seq === undefined ? body : { ...body, seq }))
      ws.send(eventFrame(7))
    }
    await insertHost(f.hostname)
    const h = harness()
    await h.crawler.start()
    await waitUntil(() => h.sink.received.some((r) => r.seq === 7), 'the marker (seq 7)', 10_000)
    expect(h.sink.received.map((r) => [r.t, r.seq])).toEqual([
      ['#identity', 5],
      ['#identity', 7],
    ])
    expect(h.stats.snapshot(f.hostname).dropped).toEqual({ 'bad-frame': 5 })
    expect(h.stats.snapshot(f.hostname).lastError?.message).toMatch(/#identity without a positive integer seq/)
    expect(f.connections).toHaveLength(1)
    expect(h.crawler.connection(f.hostname)?.cursor).toBe(7)
  })

  it('counts garbage and text frames, closes, and reconnects from the last seq', async () => {
    const f = await fake()
    f.onConnection = ({ ws }) => {
      const n = f.connections.length
      if (n === 1) {
        ws.send(eventFrame(10))
        ws.send(Buffer.from([0xff, 0x00, 0x13, 0x37]))
        ws.send(eventFrame(11)) // after the bad frame: never read
      } else if (n === 2) {
        ws.send(eventFrame(11))
        ws.send('{"op":1}') // text frame
      } else {
        ws.send(eventFrame(12))
      }
    }
    await insertHost(f.hostname)
    const h = harness()
    await h.crawler.start()
    await f.waitForConnections(3)
    await waitUntil(() => h.sink.received.length === 3, 'h.sink.received.length === 3')
    expect(h.sink.seqs()).toEqual([10, 11, 12])
    // A host known from the database with no cursor asks for cursor=0 (only a new admission starts live).
    expect(f.connections.map((c) => c.cursor)).toEqual(['0', '10', '11'])
    expect(h.stats.snapshot(f.hostname).dropped).toEqual({ 'bad-frame': 1, 'text-frame': 1 })
    expect(await metric(h.registry, 'relay_upstream_connection_failures_total')).toBeGreaterThanOrEqual(2)
    // The status write is asynchronous: on a busy machine the third event can arrive before it lands.
    await waitUntil(async () => /text frame/.test((await hostRow(f.hostname)).last_error ?? ''), 'last_error of the text frame', 3_000)
  })

  it('closes on a frame over 5 MB, counts it, and reconnects', async () => {
    const f = await fake()
    f.onConnection = ({ ws }) => {
      if (f.connections.length === 1) {
        ws.send(eventFrame(1))
        ws.send(Buffer.alloc(5_000_001, 0xa2))
      } else {
        ws.send(eventFrame(2))
      }
    }
    await insertHost(f.hostname)
    const h = harness()
    await h.crawler.start()
    await f.waitForConnections(2)
    await waitUntil(() => h.sink.received.length === 2, 'h.sink.received.length === 2')
    expect(h.sink.seqs()).toEqual([1, 2])
    expect(h.stats.snapshot(f.hostname).dropped).toEqual({ 'too-big': 1 })
    await waitUntil(async () => ((await hostRow(f.hostname)).last_error ?? '').includes('5000000'), 'last_error', 2_000)
  })

  it('backs off while a host keeps failing (offline), then recovers to active', async () => {
    const f = await fake()
    f.onConnection = ({ ws }) => ws.terminate() // accepts, then drops at once, delivering nothing
    await insertHost(f.hostname)
    const h = harness({ backoff: { baseMs: 10, maxMs: 80 } })
    await h.crawler.start()
    await waitUntil(() => (h.crawler.connection(f.hostname)?.attempt ?? 0) >= 4, 'attempts', 5_000)
    const failing = h.crawler.connection(f.hostname)
    expect(failing?.state === 'backoff' || failing?.state === 'connecting').toBe(true)
    expect(failing?.lastError).toMatch(/closed by host/)
    await waitUntil(async () => (await hostRow(f.hostname)).status === 'offline', 'offline', 2_000)

    // then the host goes away entirely: dials fail, attempts keep growing
    const attemptsBefore = h.crawler.connection(f.hostname)?.attempt ?? 0
    await f.close()
    await waitUntil(() => (h.crawler.connection(f.hostname)?.attempt ?? 0) >= attemptsBefore + 3, 'more attempts', 5_000)
    expect(h.crawler.connection(f.hostname)?.lastError).toMatch(/ECONNREFUSED|failed/)
    expect((await hostRow(f.hostname)).status).toBe('offline')
    expect(await metric(h.registry, 'relay_upstream_connection_attempts_total')).toBeGreaterThanOrEqual(attemptsBefore + 3)

    // it comes back healthy: active again, and the backoff resets once events flow
    f.onConnection = ({ ws }) => ws.send(eventFrame(1))
    await f.reopen()
    await waitUntil(() => h.sink.received.length === 1, 'event after recovery', 5_000)
    await waitUntil(async () => (await hostRow(f.hostname)).status === 'active', 'active', 2_000)
    expect(h.crawler.connection(f.hostname)?.state).toBe('open')
    f.onConnection = ({ ws }) => ws.send(eventFrame(2))
    for (const c of f.connections) c.ws.close()
    await waitUntil(() => h.sink.received.length === 2, 'event after a reconnect', 5_000)
    expect(h.crawler.connection(f.hostname)?.attempt).toBe(0)
  })

  it('retries after an HTTP refusal of the upgrade and says why', async () => {
    const f = await fake()
    f.rejectUpgradeWith = 503
    await insertHost(f.hostname)
    const h = harness()
    await h.crawler.start()
    await waitUntil(async () => ((await hostRow(f.hostname)).last_error ?? '').includes('HTTP 503'), 'last_error', 3_000)
    f.rejectUpgradeWith = null
    f.onConnection = ({ ws }) => ws.send(eventFrame(3))
    await waitUntil(() => h.sink.received.length === 1, 'event', 5_000)
  })

  it('FutureCursor (policy reset): records it, resets the cursor to 0 and reconnects live', async () => {
    const f = await fake()
    f.onConnection = ({ ws, cursor }) => {
      if (cursor !== null) {
        ws.send(encodeErrorFrame('FutureCursor', 'cursor in the future'))
        ws.close(1008, 'FutureCursor')
      } else {
        ws.send(eventFrame(1))
        ws.send(eventFrame(2))
      }
    }
    const id = await insertHost(f.hostname, { cursor: 5_000 })
    const h = harness()
    await h.crawler.start()
    await f.waitForConnections(2)
    expect(f.connections.map((c) => c.cursor)).toEqual(['5000', null])
    await waitUntil(() => h.sink.received.length === 2, 'h.sink.received.length === 2')
    expect(h.sink.seqs()).toEqual([1, 2])
    expect(h.resets).toEqual([id])
    await waitUntil(async () => (await hostRow(f.hostname)).cursor === 0, 'cursor reset', 2_000)
    const row = await hostRow(f.hostname)
    expect(row.status).toBe('active')
    expect(row.last_error).toMatch(/FutureCursor.*5000/)
    expect(h.stats.snapshot(f.hostname).lastError?.message).toMatch(/FutureCursor/)
    expect(await metric(h.registry, 'relay_upstream_future_cursor_total')).toBe(1)
  })

  it('FutureCursor (policy stop): the host goes idle and is not redialled', async () => {
    const f = await fake()
    f.onConnection = ({ ws }) => {
      ws.send(encodeErrorFrame('FutureCursor'))
      ws.close(1008)
    }
    await insertHost(f.hostname, { cursor: 77 })
    const h = harness({ futureCursorPolicy: 'stop' })
    await h.crawler.start()
    await waitUntil(async () => (await hostRow(f.hostname)).status === 'idle', 'idle', 10_000)
    // 'stopped' is terminal: a redial is only ever scheduled through 'backoff', so none is pending.
    await waitUntil(() => h.crawler.connection(f.hostname)?.state === 'stopped', 'connection stopped', 10_000)
    expect(h.crawler.connection(f.hostname)).toMatchObject({ state: 'stopped', status: 'idle' })
    expect(f.connections).toHaveLength(1)
    expect((await hostRow(f.hostname)).cursor).toBe(77)
    expect(h.resets).toEqual([])
  })

  it('other error frames: last_error and reconnect with backoff', async () => {
    const f = await fake()
    f.onConnection = ({ ws }) => {
      if (f.connections.length === 1) {
        ws.send(encodeErrorFrame('InternalError', 'sequencer on fire'))
        ws.close(1008)
      } else ws.send(eventFrame(9))
    }
    await insertHost(f.hostname)
    const h = harness()
    await h.crawler.start()
    await waitUntil(() => h.sink.received.length === 1, 'event', 5_000)
    expect(f.connections).toHaveLength(2)
    // The status write is asynchronous: wait for it rather than race it.
    await waitUntil(async () => /InternalError: sequencer on fire/.test((await hostRow(f.hostname)).last_error ?? ''), 'last_error', 3_000)
  })

  it('clips a huge upstream error message before keeping it in stats and the host row', async () => {
    const f = await fake()
    f.onConnection = ({ ws }) => {
      if (f.connections.length === 1) {
        ws.send(encodeErrorFrame('InternalError', 'x'.repeat(100_000)))
        ws.close(1008)
      } else ws.send(eventFrame(9))
    }
    await insertHost(f.hostname)
    const h = harness()
    await h.crawler.start()
    await waitUntil(() => h.sink.received.length === 1, 'event', 5_000)
    const kept = h.stats.snapshot(f.hostname).lastError?.message ?? ''
    expect(kept).toMatch(/^upstream error frame InternalError: x+…$/)
    expect(kept.length).toBeLessThan(600)
    await waitUntil(async () => ((await hostRow(f.hostname)).last_error ?? '').startsWith('upstream error frame InternalError'), 'last_error', 3_000)
    expect((await hostRow(f.hostname)).last_error!.length).toBeLessThan(600)
  })

  it('refuses a relay detected by the Server header of the upgrade and bans it', async () => {
    const f = await fake()
    f.serverHeader = 'atrelay/1.0 (atproto-relay)'
    f.onConnection = ({ ws }) => ws.send(eventFrame(1))
    await insertHost(f.hostname)
    const h = harness()
    await h.crawler.start()
    await waitUntil(async () => (await hostRow(f.hostname)).status === 'banned', 'banned', 3_000)
    expect((await hostRow(f.hostname)).last_error).toMatch(/relay loop/)
    expect(h.sink.received).toHaveLength(0)
    expect(h.crawler.connection(f.hostname)).toBeUndefined()
  })

  it('reconnects a host that stops answering pings', async () => {
    const f = await fake()
    f.onConnection = ({ ws }) => {
      ws.send(eventFrame(f.connections.length))
      // Stop reading: our pings go unanswered.
      if (f.connections.length === 1) (ws as unknown as { _socket: { pause(): void } })._socket.pause()
    }
    await insertHost(f.hostname)
    const h = harness({ pingIntervalMs: 60 })
    await h.crawler.start()
    await f.waitForConnections(2, 5_000)
    await waitUntil(() => h.sink.received.length === 2, 'h.sink.received.length === 2')
    expect(h.crawler.connection(f.hostname)?.lastError).toMatch(/no traffic or pong/)
  })
})

describe('backpressure and rate limits', () => {
  it('stops reading the socket while ingest is full and loses nothing when it resumes', async () => {
    const f = await fake()
    const total = 250
    const payload = 'x'.repeat(50_000)
    let serverWs: import('ws').WebSocket | undefined
    f.onConnection = ({ ws }) => {
      serverWs = ws
      for (let seq = 1; seq <= total; seq++) ws.send(encodeMessageFrame('#commit', { seq, payload }))
    }
    await insertHost(f.hostname)
    const h = harness()
    let release!: () => void
    h.sink.gate = new Promise<void>((resolve) => (release = resolve))
    await h.crawler.start()
    await f.waitForConnections(1)
    // The first push blocks; the crawler pauses the socket, so the server's send buffer fills.
    await waitUntil(() => h.crawler.connection(f.hostname)?.heldBack === 'backpressure', 'held back', 10_000)
    await waitUntil(() => (serverWs?.bufferedAmount ?? 0) > 1_000_000, 'server send buffer over 1 MB', 10_000)
    expect(h.sink.received).toHaveLength(1)
    const queued = h.crawler.connection(f.hostname)?.queued ?? 0
    expect(queued).toBeLessThan(total - 1)
    expect(await metric(h.registry, 'relay_upstream_held_back_hosts')).toBe(1)

    h.sink.gate = undefined
    release()
    await waitUntil(() => h.sink.received.length === total, 'all frames', 10_000)
    expect(h.sink.seqs()).toEqual(Array.from({ length: total }, (_, i) => i + 1))
    expect(h.stats.snapshot(f.hostname).dropped).toEqual({})
    await waitUntil(() => serverWs?.bufferedAmount === 0, 'server drained', 3_000)
    expect(h.crawler.connection(f.hostname)?.heldBack).toBeNull()
  })

  it('delays a flood beyond the per-second limit instead of dropping it', async () => {
    const f = await fake()
    const total = 110
    f.onConnection = ({ ws }) => {
      for (let seq = 1; seq <= total; seq++) ws.send(eventFrame(seq))
    }
    await insertHost(f.hostname, { account_limit: 0 }) // 50 events/s
    const h = harness()
    await h.crawler.start()
    await f.waitForConnections(1)
    await waitUntil(() => h.crawler.connection(f.hostname)?.heldBack === 'rate-limit', 'rate limited', 3_000)
    const info = h.crawler.connection(f.hostname)
    expect(info?.rateLimits).toMatchObject({ perSecond: 50, perHour: 2_500, perDay: 20_000 })
    expect(h.sink.received.length).toBeLessThanOrEqual(50)
    await waitUntil(() => h.sink.received.length === total, 'every frame after the window', 6_000)
    expect(h.sink.seqs()).toEqual(Array.from({ length: total }, (_, i) => i + 1))
    expect(h.stats.snapshot(f.hostname).dropped).toEqual({})
  })

  it('an #info flood is held to the same rate limits and counted, ahead of the events behind it', async () => {
    const f = await fake()
    const infos = 80
    f.onConnection = ({ ws }) => {
      for (let i = 0; i < infos; i++) ws.send(encodeInfoFrame('Flood', `#${i}`))
      ws.send(eventFrame(1))
    }
    await insertHost(f.hostname, { account_limit: 0 }) // 50 events/s
    const h = harness()
    await h.crawler.start()
    await waitUntil(() => h.crawler.connection(f.hostname)?.heldBack === 'rate-limit', 'rate limited by #info alone', 3_000)
    expect(h.sink.received).toHaveLength(0)
    expect(h.stats.snapshot(f.hostname).dropped.info ?? 0).toBeLessThanOrEqual(50)
    await waitUntil(() => h.sink.received.length === 1, 'the event after the window', 6_000)
    expect(h.stats.snapshot(f.hostname).dropped).toEqual({ info: infos })
    expect(f.connections).toHaveLength(1)
  })

  it('raising the account limit raises the rate limits live', async () => {
    const f = await fake()
    f.onConnection = ({ ws }) => {
      for (let seq = 1; seq <= 200; seq++) ws.send(eventFrame(seq))
    }
    await insertHost(f.hostname, { account_limit: 0 })
    const h = harness()
    await h.crawler.start()
    await waitUntil(() => h.crawler.connection(f.hostname)?.heldBack === 'rate-limit', 'rate limited', 3_000)
    expect(await h.crawler.setAccountLimit(f.hostname, 1_000_000)).toBe(true)
    expect(h.crawler.connection(f.hostname)?.rateLimits.perSecond).toBe(1_050)
    await waitUntil(() => h.sink.received.length === 200, 'released at once', 1_000)
    expect((await hostRow(f.hostname)).account_limit).toBe(1_000_000)
  })
})

describe('rate-limit episodes', () => {
  it('a host held back by its rate limit says so once (log, gauge, view) and once more when released', async () => {
    const f = await fake()
    const total = 110
    f.onConnection = ({ ws }) => {
      for (let seq = 1; seq <= total; seq++) ws.send(eventFrame(seq))
    }
    await insertHost(f.hostname, { account_limit: 0 }) // 50 events/s
    const logs: { msg: string; host?: string; window?: string; limit?: number }[] = []
    const logger = pino({ level: 'info' }, { write: (line: string) => void logs.push(JSON.parse(line) as (typeof logs)[number]) })
    const h = harness({ logger, rateLimitQuietMs: 1_000 })
    await h.crawler.start()
    await waitUntil(() => h.crawler.connection(f.hostname)?.rateLimited != null, 'rate-limit episode', 3_000)
    expect(h.crawler.connection(f.hostname)?.rateLimited).toMatchObject({ window: 'perSecond', limit: 50 })
    expect([...h.crawler.rateLimitedHosts().keys()]).toEqual([f.hostname])
    expect(await metric(h.registry, 'relay_upstream_rate_limited_hosts')).toBe(1)

    await waitUntil(() => h.sink.received.length === total, 'every frame after the windows', 10_000)
    await waitUntil(() => h.crawler.connection(f.hostname)?.rateLimited === null, 'episode over', 10_000)
    expect(await metric(h.registry, 'relay_upstream_rate_limited_hosts')).toBe(0)
    const mine = logs.filter((l) => l.host === f.hostname && /rate limit/.test(l.msg))
    // One line when it starts and one when it ends, not one per held event (110 events over ~2 s of windows).
    expect(mine.length).toBeGreaterThanOrEqual(2)
    expect(mine.length).toBeLessThanOrEqual(4)
    expect(mine[0]).toMatchObject({ window: 'perSecond', limit: 50, msg: expect.stringMatching(/^host held back by its per-second rate limit/) })
    expect(mine.at(-1)?.msg).toBe('host no longer held back by its rate limit')
  })

  it('unblocking clears the block message but keeps a real last error', async () => {
    const f = await fake()
    await insertHost(f.hostname)
    const h = harness()
    await h.crawler.start()
    expect(await h.crawler.blockHost(f.hostname)).toBe(true)
    expect((await hostRow(f.hostname)).last_error).toBe('blocked by the relay operator')
    expect(await h.crawler.unblockHost(f.hostname)).toBe(true)
    expect(await hostRow(f.hostname)).toMatchObject({ status: 'active', last_error: null, last_error_at: null })

    await tdb.storage.db.updateTable('host').set({ status: 'banned', last_error: 'HTTP 503 from upstream' }).where('hostname', '=', f.hostname).execute()
    expect(await h.crawler.unblockHost(f.hostname)).toBe(true)
    expect(await hostRow(f.hostname)).toMatchObject({ status: 'active', last_error: 'HTTP 503 from upstream' })
  })
})

describe('crawler lifecycle', () => {
  it('a new crawler on the same database reconnects every host that is not banned', async () => {
    const active = await fake()
    const offline = await fake()
    const idle = await fake()
    const banned = await fake()
    await insertHost(active.hostname, { cursor: 3 })
    await insertHost(offline.hostname, { status: 'offline' })
    await insertHost(idle.hostname, { status: 'idle' })
    await insertHost(banned.hostname, { status: 'banned' })
    const first = harness()
    await first.crawler.start()
    for (const f of [active, offline, idle]) await f.waitForConnections(1)
    await first.crawler.stop()

    const second = harness()
    await second.crawler.start()
    await active.waitForConnections(2)
    await offline.waitForConnections(2)
    await idle.waitForConnections(2)
    expect(active.connections[1]?.cursor).toBe('3')
    await waitUntil(async () => (await hostRow(offline.hostname)).status === 'active', 'offline → active', 10_000)
    // The crawler dials only hosts it holds a connection for, and it holds none for the banned one.
    expect(second.crawler.connections().map((c) => c.hostname).sort()).toEqual([active.hostname, offline.hostname, idle.hostname].sort())
    expect(banned.connections).toHaveLength(0)
  })

  it('block kills the connection and unblock reconnects; lenient is applied live', async () => {
    const f = await fake()
    f.onConnection = ({ ws }) => ws.send(eventFrame(f.connections.length))
    await insertHost(f.hostname)
    const h = harness()
    await h.crawler.start()
    await f.waitForConnections(1)
    await waitUntil(() => h.sink.received.length === 1, 'h.sink.received.length === 1')

    expect(await h.crawler.blockHost(f.hostname)).toBe(true)
    expect((await hostRow(f.hostname)).status).toBe('banned')
    expect(h.crawler.connection(f.hostname)).toBeUndefined()
    await waitUntil(() => f.connections[0]?.ws.readyState === 3, 'server side closed', 2_000)
    expect((await h.crawler.requestCrawl(f.hostname).catch((e: Error) => e)) as Error).toMatchObject({ error: 'HostBanned' })

    expect(await h.crawler.unblockHost(f.hostname)).toBe(true)
    await f.waitForConnections(2)
    await waitUntil(async () => (await hostRow(f.hostname)).status === 'active', 'active', 2_000)

    await h.crawler.setLenient(f.hostname, true)
    expect((await hostRow(f.hostname)).lenient).toBe(true)
    const captured: (boolean | null)[] = []
    h.sink.push = (host) => {
      captured.push(host.lenient)
      return undefined
    }
    f.connections[1]?.ws.send(eventFrame(6))
    await waitUntil(() => captured.length === 1, 'captured.length === 1')
    expect(captured).toEqual([true])
    expect(await h.crawler.blockHost('unknown.example.com')).toBe(false)
  })

  it('stop() waits for the push ingest is holding and closes cleanly', async () => {
    const f = await fake()
    f.onConnection = ({ ws }) => ws.send(eventFrame(1))
    await insertHost(f.hostname)
    const h = harness()
    let settled = false
    let release!: () => void
    h.sink.gate = new Promise<void>((resolve) => (release = resolve)).then(() => {
      settled = true
    })
    await h.crawler.start()
    await waitUntil(() => h.sink.received.length === 1, 'h.sink.received.length === 1')
    const stopping = h.crawler.stop()
    let stopped = false
    void stopping.then(() => (stopped = true))
    // stop() has got as far as closing the socket, and still waits for the held push.
    await waitUntil(() => f.connections[0]?.ws.readyState === 3, 'server side closed', 10_000)
    expect(stopped).toBe(false)
    release()
    await stopping
    expect(settled).toBe(true)
    expect(await metric(h.registry, 'relay_upstream_connected_hosts')).toBe(0)
  })
})

describe('embedded PGlite', () => {
  it('admits, connects, records FutureCursor resets and restarts on PGlite too', async () => {
    const lite = await createTestDatabase('pglite')
    cleanups.push(() => lite.cleanup())
    const f = await fake()
    f.onConnection = ({ ws, cursor }) => {
      if (cursor === '900') {
        ws.send(encodeErrorFrame('FutureCursor'))
        ws.close(1008)
      } else ws.send(eventFrame(f.connections.length))
    }
    const first = harness({ storage: lite.storage })
    expect((await first.crawler.requestCrawl(f.hostname)).outcome).toBe('added')
    await waitUntil(() => first.sink.received.length === 1, 'first.sink.received.length === 1')
    await first.crawler.stop()
    await lite.storage.db.updateTable('host').set({ cursor: 900 }).execute()

    const second = harness({ storage: lite.storage })
    await second.crawler.start()
    await waitUntil(() => second.sink.received.length === 1, 'event after reset', 5_000)
    expect(f.connections.map((c) => c.cursor)).toEqual([null, '900', null])
    const row = await lite.storage.db.selectFrom('host').selectAll().executeTakeFirstOrThrow()
    expect(row).toMatchObject({ hostname: f.hostname, cursor: 0, status: 'active' })
    expect(row.last_error).toMatch(/FutureCursor/)
  }, 180_000)
})
