/**
 * Hostile hosts against the whole relay, each while a well-behaved host
 * streams real signed commits alongside. In every case the relay stays up,
 * forwards no invalid event, forwards every legitimate event in per-account
 * order, and counts what it dropped by reason (stats and getHostStatus).
 */
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import type { Relay } from '../../src/relay.js'
import { createPostgresDatabase } from '../helpers/db.js'
import { encodeEventFrame, encodeInfoFrame } from '../helpers/frames.js'
import {
  carBombCommit,
  commitBombFrame,
  forgedSignatureCommit,
  futureRevCommit,
  garbageFrame,
  infoBombFrame,
  infoFlatFrame,
  oversizeBlocksCommit,
  oversizeFrame,
  replayedRevCommit,
  truncatedFrame,
  wrongRepoCommit,
} from '../helpers/hostile-frames.js'
import { LoopbackPlc } from '../helpers/loopback-plc.js'
import { TestAccount } from '../helpers/repo-builder.js'
import { Ledger, post, startHost, streamCommits, type TestHost } from './accounts.js'
import { healthStatus, hostStatus, startTestRelay } from '../helpers/relay.js'
import { FirehoseClient } from '../helpers/firehose-client.js'
import { waitUntil } from '../helpers/wait.js'

let drop: () => Promise<void>
let plc: LoopbackPlc
let relay: Relay
let reader: FirehoseClient
let good: TestHost
const handles = new Map<string, string>()
const ledger = new Ledger()
const hostile: TestHost[] = []

beforeAll(async () => {
  const db = await createPostgresDatabase()
  drop = db.drop
  plc = await LoopbackPlc.start()
  relay = await startTestRelay({ databaseUrl: db.url, plcUrl: plc.url, handles })
  reader = await FirehoseClient.connect(relay, 0)
  good = await startHost(relay, plc, handles, ledger, { accounts: 2 })
  await ledger.expectAllForwarded(reader)
}, 60_000)

afterAll(async () => {
  await reader?.close()
  await relay?.stop()
  for (const h of [good, ...hostile]) await h?.pds.close()
  await plc?.close()
  await drop?.()
})

afterEach(async () => {
  // Whatever the hostile host did: still up, nothing invalid out, every good event out in order.
  expect(await healthStatus(relay)).toBe(200)
  await ledger.expectAllForwarded(reader)
  ledger.expectOutputValid(reader)
  expect(reader.isClosed).toBe(false)
  // Stop the finished hostile host from taking more turns.
  for (const h of hostile.splice(0)) {
    await relay.crawler.blockHost(h.pds.hostname)
    await h.pds.close()
  }
})

async function hostileHost(opts: { accounts?: number; genesis?: boolean } = {}): Promise<TestHost> {
  const h = await startHost(relay, plc, handles, ledger, opts)
  hostile.push(h)
  return h
}

/** Waits for the drop counters to match, then checks getHostStatus reports the same. */
async function expectDrops(host: TestHost, expected: Record<string, number>): Promise<void> {
  const name = host.pds.hostname
  await waitUntil(
    () => JSON.stringify(sorted(relay.stats.snapshot(name).dropped)) === JSON.stringify(sorted(expected)),
    () => `drops ${JSON.stringify(expected)} on ${name} (have ${JSON.stringify(relay.stats.snapshot(name).dropped)})`,
  )
  const status = await hostStatus(relay, name)
  expect(status.events?.dropped).toEqual(expected)
}

function sorted(o: Record<string, number>): Record<string, number> {
  return Object.fromEntries(Object.entries(o).sort(([a], [b]) => a.localeCompare(b)))
}

/** Waits until the relay has (re)subscribed to `host` more than `connections` times in total and is connected. */
async function reconnected(host: TestHost, connections: number): Promise<void> {
  await waitUntil(() => host.pds.stats.connections > connections && host.pds.openConnections === 1, `the relay to reconnect to ${host.pds.hostname}`)
}

describe('hostile hosts beside a well-behaved one', () => {
  it('forged signatures are dropped (bad-signature); the host’s valid commits still go out', async () => {
    const stream = streamCommits(good, ledger)
    const bad = await hostileHost()
    const a = bad.accounts[0]!
    for (let i = 0; i < 3; i++) {
      bad.pds.publish(await forgedSignatureCommit(a))
      ledger.publish(bad.pds, await post(a))
    }
    await stream.stop()
    await expectDrops(bad, { 'bad-signature': 3 })
  })

  it('events for DIDs hosted elsewhere or not at all are dropped (wrong-host, no-identity)', async () => {
    const stream = streamCommits(good, ledger)
    const bad = await hostileHost()
    const victim = good.accounts[0]!
    // Validly signed by the victim's key, but the victim's PDS is the good host.
    bad.pds.publish(await victim.commit({ action: 'create', collection: 'app.bsky.feed.like', record: { $type: 'app.bsky.feed.like', createdAt: new Date().toISOString() } }, { apply: false }))
    bad.pds.publish(victim.accountEvent(false, 'deactivated'))
    // An #identity for a DID it does not host: re-resolved, still not this host, so not forwarded.
    bad.pds.publish(victim.identityEvent())
    // A DID nobody registered.
    const ghost = await TestAccount.create({ pdsUrl: bad.pds.url })
    const ghostGenesis = await ghost.genesis()
    bad.pds.publish(...ghostGenesis.filter((e) => e.t === '#commit' || e.t === '#identity'))
    // Its own account, claiming another repo in the body.
    bad.pds.publish(await wrongRepoCommit(bad.accounts[0]!, victim.did))
    ledger.publish(bad.pds, await post(bad.accounts[0]!))
    await stream.stop()
    await expectDrops(bad, { 'wrong-host': 4, 'no-identity': 2 })
    expect((await relay.ingest.accountStatus(victim.did))?.combined).toEqual({ active: true })
    expect(reader.events.filter((e) => e.t === '#identity' && e.did === victim.did)).toHaveLength(1)
  })

  it('replayed and future revs are dropped (duplicate, future-rev)', async () => {
    const stream = streamCommits(good, ledger)
    const bad = await hostileHost()
    const a = bad.accounts[0]!
    const genesisRev = a.rev
    const first = await post(a)
    ledger.publish(bad.pds, first)
    bad.pds.publish(first) // the same commit again under a new seq
    bad.pds.publish(await replayedRevCommit(a)) // a different commit reusing the current rev
    bad.pds.publish(await replayedRevCommit(a, undefined, genesisRev)) // an older rev
    bad.pds.publish(await futureRevCommit(a)) // an hour ahead
    ledger.publish(bad.pds, await post(a))
    await stream.stop()
    await expectDrops(bad, { duplicate: 3, 'future-rev': 1 })
  })

  it('garbage bytes, truncated frames and text frames end the connection; it resumes from its cursor', async () => {
    const stream = streamCommits(good, ledger)
    const bad = await hostileHost()
    const a = bad.accounts[0]!
    const junk: [string, () => Promise<void>][] = [
      ['garbage', async () => bad.pds.emitRaw(garbageFrame(300))],
      ['truncated', async () => bad.pds.emitRaw(truncatedFrame(encodeEventFrame(await post(a), bad.pds.seq + 1)))],
      ['text', async () => bad.pds.emitRaw('{"op":1,"t":"#commit"}', { binary: false })],
    ]
    for (const [what, send] of junk) {
      const connections = bad.pds.stats.connections
      await send()
      await reconnected(bad, connections)
      // Resumed after the last event it handled; the next valid event goes out.
      expect(bad.pds.stats.cursors.at(-1), what).toBe(bad.pds.seq)
      ledger.publish(bad.pds, await post(a))
    }
    await stream.stop()
    await expectDrops(bad, { 'bad-frame': 2, 'text-frame': 1 })
    // Each bad frame marks the host offline; the reconnect's 'active' is written just after it opens.
    await waitUntil(async () => (await hostStatus(relay, bad.pds.hostname)).status === 'active', 'host status active after the last reconnect', 20_000)
  })

  it('seqs that go backwards are dropped (seq-not-increasing); #info is counted, neither forwarded nor fatal', async () => {
    const stream = streamCommits(good, ledger)
    const bad = await hostileHost()
    const a = bad.accounts[0]!
    const first = await post(a)
    ledger.publish(bad.pds, first)
    const connections = bad.pds.stats.connections
    // The same valid commit again, under an older seq on the same connection.
    bad.pds.emit(encodeEventFrame(first, 1), { seq: 1 })
    bad.pds.emitRaw(encodeInfoFrame('OutdatedCursor', 'cursor is older than the backfill window'))
    ledger.publish(bad.pds, await post(a))
    await stream.stop()
    await expectDrops(bad, { info: 1, 'seq-not-increasing': 1 })
    await ledger.expectAllForwarded(reader)
    expect(bad.pds.stats.connections).toBe(connections)
    expect(reader.events.some((o) => o.t === '#info')).toBe(false)
  })

  it('oversize frames (> 5 MB) and oversize blocks are dropped (too-big)', async () => {
    const stream = streamCommits(good, ledger)
    const bad = await hostileHost()
    const a = bad.accounts[0]!
    const connections = bad.pds.stats.connections
    bad.pds.emitRaw(await oversizeFrame(a, bad.pds.seq + 1))
    await reconnected(bad, connections)
    ledger.publish(bad.pds, await post(a))
    // Under the frame limit but over the 2 MB blocks limit: dropped by ingest, the connection stays.
    bad.pds.publish(await oversizeBlocksCommit(a))
    ledger.publish(bad.pds, await post(a))
    await stream.stop()
    await expectDrops(bad, { 'too-big': 2 })
  })

  it('nesting bombs (#info, #commit, a CAR commit block) are refused before decoding, counted, and back the host off', async () => {
    const stream = streamCommits(good, ledger)
    const bad = await hostileHost()
    const a = bad.accounts[0]!
    const name = bad.pds.hostname
    const loop = monitorEventLoopDelay({ resolution: 10 })
    loop.enable()
    const rssBefore = process.memoryUsage().rss
    const frames: [string, () => Uint8Array][] = [
      ['#info 4.9 M deep', () => infoBombFrame()],
      ['#commit 4.9 M deep', () => commitBombFrame(bad.pds.seq + 1)],
      ['#info 4.9 M items', () => infoFlatFrame()],
      ['#info 4.9 M deep again', () => infoBombFrame()],
    ]
    try {
      // Each bomb after a good event: the good event must not reset the backoff.
      for (const [what, frame] of frames) {
        ledger.publish(bad.pds, await post(a))
        await waitUntil(() => reader.of(a.did).length === ledger.expected.get(a.did)!.length, `good event before ${what}`)
        const connections = bad.pds.stats.connections
        bad.pds.emitRaw(frame())
        expect(await healthStatus(relay), what).toBe(200)
        await reconnected(bad, connections)
      }
      // Inside a well-formed frame: the CAR's commit block (1 MB, hash-correct) is the bomb.
      bad.pds.publish(await carBombCommit(a))
      ledger.publish(bad.pds, await post(a))
      await stream.stop()
      await expectDrops(bad, { 'too-deep': 4, 'too-many-items': 1 })
    } finally {
      loop.disable()
      // Measured, not asserted (machine speed): reported with the change.
      console.log(`nesting bombs: event-loop delay max ${(loop.max / 1e6).toFixed(1)} ms, p99 ${(loop.percentile(99) / 1e6).toFixed(1)} ms; RSS +${((process.memoryUsage().rss - rssBefore) / 1e6).toFixed(0)} MB`)
    }
    const rssGrowth = process.memoryUsage().rss - rssBefore
    expect(rssGrowth).toBeLessThan(150 * 1024 * 1024)
    // Four refused connections in a row despite the good events between them: the backoff kept growing.
    expect(relay.crawler.connection(name)!.attempt).toBeGreaterThanOrEqual(4)
    const status = await hostStatus(relay, name)
    expect(status.lastError?.message).toMatch(/refused frame \(too-deep\)/)
    const metrics = await relay.registry.metrics()
    expect(metrics).toMatch(/relay_upstream_connection_failures_total\{reason="too-deep"\} [1-9]/)
    expect(metrics).toMatch(/relay_upstream_connection_failures_total\{reason="too-many-items"\} [1-9]/)
  }, 120_000)

  it('a flood is held to the host rate limit while the other host is unaffected', async () => {
    const flood = await hostileHost({ genesis: false })
    const a = flood.accounts[0]!
    ledger.unmatched.add(a.did)
    const name = flood.pds.hostname
    const limit = relay.crawler.connection(name)!.rateLimits.perSecond
    expect(limit).toBe(50) // RELAY_DEFAULT_ACCOUNT_LIMIT 100 → 50 events/s
    const t0 = Date.now()
    flood.pds.flood((seq) => encodeEventFrame(a.accountEvent(true), seq), { ratePerSec: 1_000 })
    const stream = streamCommits(good, ledger)
    let held = false
    await waitUntil(() => {
      if (relay.crawler.connection(name)?.heldBack === 'rate-limit') held = true
      return Date.now() - t0 > 2_000
    }, 'two seconds of flood')
    // While it is held back, getHostStatus says by what; per-second pacing leaves the status active
    // (only a spent hourly or daily budget makes it the lexicon's `throttled`).
    const during = (await hostStatus(relay, name)) as Awaited<ReturnType<typeof hostStatus>> & { rateLimited?: unknown }
    expect(during).toMatchObject({ status: 'active', rateLimited: { window: 'perSecond', limit: 50 } })
    await stream.stop()
    // Every good event went out while the flood was still being held back.
    await ledger.expectAllForwarded(reader)
    expect(flood.pds.playing).toBe(true)
    const elapsed = (Date.now() - t0) / 1000
    const received = relay.stats.snapshot(name).received
    flood.pds.stopPlayback()
    if (process.env.RELAY_TEST_VERBOSE) console.log({ elapsed, received, offered: flood.pds.stats.framesSent, forwarded: reader.of(a.did).length })
    expect(held).toBe(true)
    expect(received).toBeGreaterThan(limit / 2)
    // Fixed one-second windows with the previous one weighted in: at most `limit` per window touched.
    expect(received).toBeLessThanOrEqual(limit * (Math.ceil(elapsed) + 1))
    expect(flood.pds.stats.framesSent).toBeGreaterThan(received * 2)
    // What did get through is valid and forwarded; nothing was dropped.
    expect(reader.of(a.did).every((o) => o.t === '#account' && o.body.active === true)).toBe(true)
    expect(reader.of(a.did).length).toBeGreaterThan(0)
    expect(relay.stats.snapshot(name).dropped).toEqual({})
  })

  it('a host that keeps dropping the connection: resumed from the cursor, backoff grows while refused, then recovers', async () => {
    const stream = streamCommits(good, ledger)
    const flaky = await hostileHost()
    const a = flaky.accounts[0]!
    const name = flaky.pds.hostname
    for (let i = 0; i < 3; i++) {
      ledger.publish(flaky.pds, await post(a))
      await waitUntil(() => reader.of(a.did).length === ledger.expected.get(a.did)!.length, 'the flaky host’s commit out')
      await waitUntil(async () => (await hostStatus(relay, name)).seq === flaky.pds.seq, 'host cursor stored')
      const connections = flaky.pds.stats.connections
      flaky.pds.dropConnections()
      await reconnected(flaky, connections)
      expect(flaky.pds.stats.cursors.at(-1)).toBe(flaky.pds.seq)
    }

    // Now it refuses every dial: failures pile up, each retry waits longer (up to the cap).
    flaky.pds.setRefuseConnections(true)
    flaky.pds.dropConnections()
    const attempts: number[] = []
    await waitUntil(() => {
      const attempt = relay.crawler.connection(name)?.attempt ?? 0
      if (attempts.at(-1) !== attempt) attempts.push(attempt)
      return attempt >= 5 && flaky.pds.stats.refused >= 4
    }, 'five failed attempts, four of them refused')
    expect(attempts).toEqual([...attempts].sort((x, y) => x - y))
    const down = await hostStatus(relay, name)
    expect(down.status).toBe('offline')
    expect(down.lastError?.message).toMatch(/503/)
    expect(['backoff', 'connecting']).toContain(relay.crawler.connection(name)!.state)

    // Events written while unreachable come through the cursor once it accepts again.
    ledger.publish(flaky.pds, await post(a), await post(a))
    flaky.pds.setRefuseConnections(false)
    await waitUntil(() => flaky.pds.openConnections === 1, 'reconnect after refusals')
    await stream.stop()
    await ledger.expectAllForwarded(reader)
    await waitUntil(() => relay.crawler.connection(name)?.attempt === 0 && relay.crawler.connection(name)?.state === 'open', 'backoff reset after events')
    await waitUntil(async () => (await hostStatus(relay, name)).status === 'active', 'host active again')
    expect(relay.stats.snapshot(name).dropped).toEqual({})
  })

  it('a host that resets its sequence: FutureCursor, cursor reset, live again with new seqs', async () => {
    const stream = streamCommits(good, ledger)
    const reset = await hostileHost()
    const a = reset.accounts[0]!
    const name = reset.pds.hostname
    ledger.publish(reset.pds, await post(a), await post(a))
    const oldSeq = reset.pds.seq
    await waitUntil(async () => (await hostStatus(relay, name)).seq === oldSeq, 'host cursor stored')

    const connections = reset.pds.stats.connections
    reset.pds.resetSequence()
    await waitUntil(
      () => reset.pds.openConnections === 1 && reset.pds.stats.connections >= connections + 2 && reset.pds.stats.cursors.at(-1) === null,
      'FutureCursor, then a live subscription',
    )
    expect(reset.pds.stats.cursors.slice(connections)).toContain(oldSeq)
    ledger.publish(reset.pds, await post(a), await post(a))
    await stream.stop()
    await ledger.expectAllForwarded(reader)
    await waitUntil(async () => (await hostStatus(relay, name)).seq === 2, 'host cursor follows the new sequence')
    const status = await hostStatus(relay, name)
    expect(status.status).toBe('active')
    expect(status.lastError?.message).toMatch(/FutureCursor/)
    expect(relay.stats.snapshot(name).dropped).toEqual({})
  })
})
