/**
 * Splitter healing against loopback fake upstream relays (FakePds serving pre-sequenced frames):
 * an upstream whose seqs went backwards (restored from an older state: FutureCursor) and the
 * switch to a fallback relay (another seq space), and back.
 */
import { afterAll, describe, expect, it } from 'vitest'
import type { Registry } from 'prom-client'
import type { Splitter } from '../../src/splitter/index.js'
import { createPostgresDatabase } from '../helpers/db.js'
import { FakePds } from '../helpers/fake-pds.js'
import { encodeMessageFrame } from '../helpers/frames.js'
import { FirehoseClient } from '../helpers/firehose-client.js'
import { waitUntil } from '../helpers/wait.js'
import { startTestSplitter, splitterUrl } from './harness.js'

const cleanups: (() => Promise<unknown>)[] = []
afterAll(async () => {
  for (const fn of cleanups.reverse()) await fn().catch(() => undefined)
})

/** A sequenced #identity frame whose DID tells timelines apart. */
const frame = (timeline: string, seq: number) => encodeMessageFrame('#identity', { did: `did:plc:${timeline}${seq}`, seq, time: new Date().toISOString() })

async function metric(registry: Registry, name: string, labels: Record<string, string> = {}): Promise<number> {
  const values = (await registry.getSingleMetric(name)?.get())?.values ?? []
  return values.filter((v) => Object.entries(labels).every(([k, want]) => v.labels[k] === want)).reduce((sum, v) => sum + v.value, 0)
}

const wsUrl = (pds: FakePds) => `ws://127.0.0.1:${pds.port}`
const dids = (reader: FirehoseClient) => reader.events.filter((e) => e.t !== '#info').map((e) => `${e.seq} ${e.did}`)

async function fakeRelay(): Promise<FakePds> {
  const pds = await FakePds.start()
  cleanups.push(() => pds.close())
  return pds
}

async function splitterDatabase(): Promise<string> {
  const db = await createPostgresDatabase()
  cleanups.push(() => db.drop())
  return db.url
}

describe('splitter healing', () => {
  it('upstream restored from an older state: FutureCursor recorded, log cut back to the first new seq, consumers told', async () => {
    const upstream = await fakeRelay()
    const databaseUrl = await splitterDatabase()
    const splitter = await startTestSplitter({ upstream: wsUrl(upstream), databaseUrl })
    cleanups.push(() => splitter.stop())
    await waitUntil(() => upstream.openConnections === 1, 'the splitter to subscribe')
    const old = Array.from({ length: 10 }, (_, i) => frame('old', i + 1))
    for (const f of old) upstream.emit(f)
    await waitUntil(() => splitter.log.currentSeq() === 10, 'the splitter to store seqs 1-10')
    const watcher = await FirehoseClient.connect(splitter, 0)
    cleanups.push(() => watcher.close())
    await watcher.waitFor((ev) => ev.length === 10, 'the first ten events')

    // The upstream comes back from a backup taken at seq 6: it knows 1-6 (the same events), not 7-10.
    upstream.resetSequence()
    upstream.loadHistory(old.slice(0, 6).map((bytes, i) => ({ seq: i + 1, bytes })))
    await waitUntil(() => upstream.stats.cursors.includes(10), 'the splitter to ask again from cursor 10')
    await waitUntil(() => upstream.stats.cursors.at(-1) === null && upstream.openConnections === 1, 'the splitter to reconnect live after FutureCursor')
    expect(await metric(splitter.registry, 'relay_splitter_upstream_future_cursor_total', { action: 'reset' })).toBe(1)
    expect(splitter.upstream.status().lastError).toContain('FutureCursor')
    upstream.emit(frame('new', 7))
    upstream.emit(frame('new', 8))

    // The log now mirrors the upstream: 1-6 kept, 7-10 of the abandoned timeline gone, 7-8 the new ones.
    await waitUntil(async () => (await metric(splitter.registry, 'relay_splitter_rewinds_total', { reason: 'upstream-reset' })) === 1, 'the rewind')
    await waitUntil(() => splitter.log.currentSeq() === 8, 'the new events stored')
    await waitUntil(() => watcher.isClosed, 'the connected consumer to be let go')
    expect(await metric(splitter.registry, 'relay_firehose_consumers_cut_off_total', { reason: 'stream-reset' })).toBe(1)

    const replay = await FirehoseClient.connect(splitter, 5)
    cleanups.push(() => replay.close())
    await replay.waitFor((ev) => ev.length === 3, 'the events after cursor 5')
    expect(dids(replay)).toEqual(['6 did:plc:old6', '7 did:plc:new7', '8 did:plc:new8'])
    // A consumer at 10 (past the new head) is told, as the upstream itself would tell it.
    const ahead = await FirehoseClient.connect(splitter, 10)
    await waitUntil(() => ahead.isClosed, 'the consumer at cursor 10 to be closed')
    expect(ahead.errors.join(' ')).toContain('FutureCursor')
    // And a restart resumes from the new head: no FutureCursor this time.
    await splitter.stop()
    const again = await startTestSplitter({ upstream: wsUrl(upstream), databaseUrl })
    cleanups.push(() => again.stop())
    await waitUntil(() => upstream.stats.cursors.at(-1) === 8 && upstream.openConnections === 1, 'the restarted splitter to resume at 8')
    expect(again.log.currentSeq()).toBe(8)
  }, 120_000)

  it('RELAY_FUTURE_CURSOR=stop: the reset is recorded, the subscription stops, the log is still served', async () => {
    const upstream = await fakeRelay()
    const splitter = await startTestSplitter({ upstream: wsUrl(upstream), databaseUrl: await splitterDatabase(), env: { RELAY_FUTURE_CURSOR: 'stop' } })
    cleanups.push(() => splitter.stop())
    await waitUntil(() => upstream.openConnections === 1, 'the splitter to subscribe')
    for (let seq = 1; seq <= 3; seq++) upstream.emit(frame('s', seq))
    await waitUntil(() => splitter.log.currentSeq() === 3, 'the events stored')
    upstream.resetSequence()
    await waitUntil(() => splitter.upstream.status().state === 'stopped', 'the subscription to stop')
    expect(upstream.stats.cursors).toEqual([null, 3])
    expect(await metric(splitter.registry, 'relay_splitter_upstream_future_cursor_total', { action: 'stop' })).toBe(1)
    const health = (await (await fetch(splitterUrl(splitter, '/xrpc/_health'))).json()) as { status: string; upstream: { state: string; lastError: string } }
    expect(health.status).toBe('ok')
    expect(health.upstream.state).toBe('stopped')
    expect(health.upstream.lastError).toContain('FutureCursor')
    const replay = await FirehoseClient.connect(splitter, 0)
    cleanups.push(() => replay.close())
    await replay.waitFor((ev) => ev.length === 3, 'the stored events')
    expect(dids(replay)).toEqual(['1 did:plc:s1', '2 did:plc:s2', '3 did:plc:s3'])
  }, 60_000)

  it('fallback: after the upstream is gone for RELAY_SPLITTER_FAILOVER_AFTER it follows the other relay, in that relay’s seq space', async () => {
    const primary = await fakeRelay()
    const fallback = await fakeRelay()
    const databaseUrl = await splitterDatabase()
    // Small partitions: the switches drop the old seq space's partitions and create the new one's.
    const env = { RELAY_SPLITTER_FAILOVER_AFTER: '300ms', RELAY_EVENT_PARTITION_SIZE: '1000' }
    const partitions = async () => (await splitter.log.eventLog.partitions()).map((p) => p.start)
    let splitter: Splitter = await startTestSplitter({ upstream: wsUrl(primary), fallback: wsUrl(fallback), databaseUrl, env })
    cleanups.push(() => splitter.stop())
    await waitUntil(() => primary.openConnections === 1, 'the splitter to subscribe to the primary')
    for (let seq = 1; seq <= 5; seq++) primary.emit(frame('p', seq))
    await waitUntil(() => splitter.log.currentSeq() === 5, 'the primary events stored')
    expect(await partitions()).toEqual([0])
    const watcher = await FirehoseClient.connect(splitter, 0)
    cleanups.push(() => watcher.close())
    await watcher.waitFor((ev) => ev.length === 5, 'the primary events')

    // The primary goes away; the fallback is another relay, far ahead in its own seqs.
    primary.setRefuseConnections(true)
    primary.dropConnections()
    await waitUntil(() => fallback.openConnections === 1, 'the splitter to switch to the fallback', 30_000)
    // Live: a cursor from the primary's seq space means nothing there.
    expect(fallback.stats.cursors).toEqual([null])
    expect(splitter.upstream.status().role).toBe('fallback')
    expect(await metric(splitter.registry, 'relay_splitter_upstream_switches_total', { to: 'fallback' })).toBe(1)
    // Nothing is cut back until the fallback delivers: a fallback that never answers costs nothing.
    expect(splitter.log.currentSeq()).toBe(5)
    fallback.emit(frame('f', 7001))
    fallback.emit(frame('f', 7002))
    await waitUntil(() => splitter.log.currentSeq() === 7002, 'the fallback events stored')
    expect(await partitions()).toEqual([7000])
    await waitUntil(() => watcher.isClosed, 'the connected consumer to be let go')
    expect(await metric(splitter.registry, 'relay_splitter_rewinds_total', { reason: 'upstream-switch' })).toBe(1)

    // A consumer with a primary cursor: OutdatedCursor, then the fallback's events (all that is kept).
    const moved = await FirehoseClient.connect(splitter, 5)
    cleanups.push(() => moved.close())
    await moved.waitFor((ev) => ev.filter((e) => e.t !== '#info').length === 2, 'the fallback events')
    expect(moved.events[0]!.t).toBe('#info')
    expect(moved.events[0]!.body.name).toBe('OutdatedCursor')
    expect(dids(moved)).toEqual(['7001 did:plc:f7001', '7002 did:plc:f7002'])
    const health = (await (await fetch(splitterUrl(splitter, '/xrpc/_health'))).json()) as { upstream: { url: string; role: string; seq: number } }
    expect(health.upstream).toMatchObject({ url: wsUrl(fallback), role: 'fallback', seq: 7002 })

    // Sticky across a restart: it resumes on the fallback, from its cursor.
    await splitter.stop()
    splitter = await startTestSplitter({ upstream: wsUrl(primary), fallback: wsUrl(fallback), databaseUrl, env })
    cleanups.push(() => splitter.stop())
    await waitUntil(() => fallback.stats.cursors.at(-1) === 7002 && fallback.openConnections === 1, 'the restarted splitter to resume on the fallback')

    // The fallback goes away and the primary is back: the splitter returns to it, live, and follows its seqs again.
    primary.setRefuseConnections(false)
    fallback.setRefuseConnections(true)
    fallback.dropConnections()
    const dialsBefore = primary.stats.connections
    await waitUntil(() => primary.stats.connections > dialsBefore && primary.openConnections === 1, 'the splitter to switch back to the primary', 30_000)
    expect(primary.stats.cursors.at(-1)).toBeNull()
    primary.emit(frame('p', 6))
    await waitUntil(() => splitter.log.currentSeq() === 6, 'the primary event stored')
    expect(await partitions()).toEqual([0])
    const fresh = await FirehoseClient.connect(splitter, 0)
    cleanups.push(() => fresh.close())
    await fresh.waitFor((ev) => ev.length === 1, 'the primary event')
    expect(dids(fresh)).toEqual(['6 did:plc:p6'])
    expect(splitter.upstream.status().role).toBe('primary')
  }, 120_000)
})
