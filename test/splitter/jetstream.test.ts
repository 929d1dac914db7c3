/**
 * Jetstream on a splitter, end to end on loopback: fake hosts → the relay → a splitter. Its v1
 * /subscribe carries what the relay's does (same events, same order, commits with records, the
 * wantedDids filter on the DIDs the splitter reads from the frames), a time cursor replays from
 * the splitter's own log, and v2 subscribeEvents carries the relay's seqs. A stream reset (the
 * upstream's seqs went backwards) lets Jetstream subscribers go and empties its ring.
 */
import { afterAll, describe, expect, it } from 'vitest'
import type { Registry } from 'prom-client'
import type { Relay } from '../../src/relay.js'
import type { Splitter } from '../../src/splitter/index.js'
import { createPostgresDatabase } from '../helpers/db.js'
import { FakePds } from '../helpers/fake-pds.js'
import { FirehoseClient } from '../helpers/firehose-client.js'
import { encodeMessageFrame } from '../helpers/frames.js'
import { LoopbackPlc } from '../helpers/loopback-plc.js'
import { apiUrl, startTestRelay } from '../helpers/relay.js'
import { waitUntil } from '../helpers/wait.js'
import { expectedKeys, keyOf, RawJetClient, type JetJson } from '../jetstream/helpers.js'
import { Ledger, startHost, streamCommits } from '../relay/accounts.js'
import { startTestSplitter } from './harness.js'

const cleanups: (() => Promise<unknown>)[] = []
afterAll(async () => {
  for (const fn of cleanups.reverse()) await fn().catch(() => undefined)
})

const port = (s: { apiAddress: { port: number } }) => s.apiAddress.port
const v1 = (s: { apiAddress: { port: number } }, query = '') => `ws://127.0.0.1:${port(s)}/subscribe${query ? `?${query}` : ''}`
const v2 = (s: { apiAddress: { port: number } }, query = '') => `ws://127.0.0.1:${port(s)}/xrpc/network.bsky.jetstream.subscribeEvents${query ? `?${query}` : ''}`

async function connect(url: string, protocols: string[] = []): Promise<RawJetClient> {
  const c = await RawJetClient.connect(url, {}, protocols)
  cleanups.push(() => c.close())
  return c
}

async function metric(registry: Registry, name: string, labels: Record<string, string> = {}): Promise<number> {
  const values = (await registry.getSingleMetric(name)?.get())?.values ?? []
  return values.filter((v) => Object.entries(labels).every(([k, want]) => v.labels[k] === want)).reduce((sum, v) => sum + v.value, 0)
}

describe('Jetstream on a splitter ← relay ← fake hosts', () => {
  it('v1 carries the relay events in order (records, wantedDids), a time cursor replays from the splitter log, v2 has the relay seqs', async () => {
    const relayDb = await createPostgresDatabase()
    cleanups.push(() => relayDb.drop())
    const splitterDb = await createPostgresDatabase()
    cleanups.push(() => splitterDb.drop())
    const plc = await LoopbackPlc.start()
    cleanups.push(() => plc.close())
    const handles = new Map<string, string>()
    const ledger = new Ledger()
    const relay: Relay = await startTestRelay({ databaseUrl: relayDb.url, plcUrl: plc.url, handles })
    cleanups.push(() => relay.stop())
    // A ring of 4 events: replays come from the splitter's log (account_id 0 rows, DIDs from the frames).
    const splitter: Splitter = await startTestSplitter({ upstream: apiUrl(relay, ''), databaseUrl: splitterDb.url, env: { RELAY_JETSTREAM_RING_SIZE: '4' } })
    cleanups.push(() => splitter.stop())
    await waitUntil(() => splitter.upstream.status().state === 'open', 'the splitter to subscribe to the relay', 30_000)
    expect(splitter.jetstream).toBeDefined()

    const direct = await FirehoseClient.connect(relay, null)
    cleanups.push(() => direct.close())
    const onRelay = await connect(v1(relay))
    const onSplitter = await connect(v1(splitter))
    const host = await startHost(relay, plc, handles, ledger, { accounts: 3 })
    cleanups.push(() => host.pds.close())
    const stream = streamCommits(host, ledger, { intervalMs: 5, min: 30, mixed: true })
    await stream.stop()
    await ledger.expectAllForwarded(direct)
    await waitUntil(() => splitter.log.currentSeq() === relay.sequencer.currentSeq(), 'the splitter to store everything')

    const want = expectedKeys(direct.events)
    expect(want.length).toBeGreaterThanOrEqual(30)
    await onRelay.waitForCount(want.length, 'the relay Jetstream subscriber')
    await onSplitter.waitForCount(want.length, 'the splitter Jetstream subscriber')
    expect(onRelay.events.map(keyOf)).toEqual(want)
    expect(onSplitter.events.map(keyOf)).toEqual(want)
    // Commits carry their records, as on the relay; each Jetstream stamps its own time_us, in order.
    const creates = (c: RawJetClient) => c.events.filter((e) => e.kind === 'commit' && e.commit.operation === 'create').map((e) => JSON.stringify(e.commit.record))
    expect(creates(onSplitter).length).toBeGreaterThan(0)
    expect(creates(onSplitter)).toEqual(creates(onRelay))
    const times = onSplitter.events.map((e) => e.time_us as number)
    expect(times).toEqual([...times].sort((a, b) => a - b))
    expect(new Set(onSplitter.events.map((e) => e.did)).size).toBeGreaterThanOrEqual(3)

    // wantedDids on the splitter, replayed from its log (cursor older than every event).
    const did = direct.events.find((e) => e.t === '#commit')!.did
    const filtered = await connect(v1(splitter, `cursor=1&wantedDids=${encodeURIComponent(did)}`))
    const wantDid = expectedKeys(direct.events, { dids: [did] })
    expect(wantDid.length).toBeLessThan(want.length)
    await filtered.waitForCount(wantDid.length, 'the wantedDids subscriber')
    expect(filtered.events.map(keyOf)).toEqual(wantDid)

    // A time cursor in the middle of the splitter's stream: from that event on, out of its log.
    const middle = onSplitter.events[Math.floor(onSplitter.events.length / 2)]!.time_us as number
    const suffix = onSplitter.events.filter((e) => (e.time_us as number) >= middle)
    expect(suffix.length).toBeLessThan(onSplitter.events.length)
    const replay = await connect(v1(splitter, `cursor=${middle}`))
    await replay.waitForCount(suffix.length, 'the time-cursor replay')
    expect(replay.events.map(keyOf)).toEqual(suffix.map(keyOf))
    expect(replay.events.map((e) => e.time_us)).toEqual(suffix.map((e) => e.time_us))

    // v2 from the first relay seq: the relay's seqs and DIDs, message for message.
    const first = direct.events[0]!.seq
    const seqsOf = (c: RawJetClient) => c.events.map((m: JetJson) => `${m.payload.seq} ${m.payload.did}`)
    const v2Relay = await connect(v2(relay, `cursor=${first}`), ['xrpc.v1.json'])
    const v2Splitter = await connect(v2(splitter, `cursor=${first}`), ['xrpc.v1.json'])
    await v2Relay.waitForCount(want.length, 'the relay v2 subscriber')
    await v2Splitter.waitForCount(v2Relay.events.length, 'the splitter v2 subscriber')
    expect(seqsOf(v2Splitter)).toEqual(seqsOf(v2Relay))
    // The relay's seqs (events without a v2 message, such as a commit with no ops, have none).
    const relaySeqs = new Set(direct.events.map((e) => e.seq))
    const splitterSeqs = new Set(v2Splitter.events.map((m) => m.payload.seq as number))
    expect(splitterSeqs.size).toBeGreaterThanOrEqual(30)
    for (const seq of splitterSeqs) expect(relaySeqs.has(seq), `seq ${seq}`).toBe(true)

    // getZstdDictionary is served too.
    const dict = await fetch(`http://127.0.0.1:${port(splitter)}/xrpc/network.bsky.jetstream.getZstdDictionary`)
    expect(dict.status).toBe(200)
    expect((await dict.arrayBuffer()).byteLength).toBeGreaterThan(1000)
  }, 180_000)
})

describe('Jetstream on a splitter: stream reset', () => {
  /** A sequenced #identity frame whose DID tells timelines apart. */
  const frame = (timeline: string, seq: number) => encodeMessageFrame('#identity', { did: `did:plc:${timeline}${seq}`, seq, time: new Date().toISOString() })

  it('an upstream whose seqs went backwards: Jetstream subscribers are let go (stream-reset), the ring holds only the new timeline', async () => {
    const upstream = await FakePds.start()
    cleanups.push(() => upstream.close())
    const db = await createPostgresDatabase()
    cleanups.push(() => db.drop())
    const splitter = await startTestSplitter({ upstream: `ws://127.0.0.1:${upstream.port}`, databaseUrl: db.url })
    cleanups.push(() => splitter.stop())
    await waitUntil(() => upstream.openConnections === 1, 'the splitter to subscribe')
    const watcher = await connect(v2(splitter, 'cursor=1'), ['xrpc.v1.json'])
    const old = Array.from({ length: 10 }, (_, i) => frame('old', i + 1))
    for (const f of old) upstream.emit(f)
    await watcher.waitForCount(10, 'the first ten events')
    expect(watcher.events.map((m) => `${m.payload.seq} ${m.payload.did}`)).toEqual(Array.from({ length: 10 }, (_, i) => `${i + 1} did:plc:old${i + 1}`))

    // Restored from a backup at seq 6: 7-10 of the old timeline are gone, 7-8 are new.
    upstream.resetSequence()
    upstream.loadHistory(old.slice(0, 6).map((bytes, i) => ({ seq: i + 1, bytes })))
    await waitUntil(() => upstream.stats.cursors.at(-1) === null && upstream.openConnections === 1, 'the splitter to reconnect live after FutureCursor')
    upstream.emit(frame('new', 7))
    upstream.emit(frame('new', 8))
    await waitUntil(() => splitter.log.currentSeq() === 8, 'the new events stored')
    await watcher.waitClosed()
    expect(watcher.closeCode).toBe(1012)
    expect(await metric(splitter.registry, 'relay_jetstream_cut_off_total', { reason: 'stream-reset' })).toBe(1)

    // From seq 5: the kept 5-6 (log) and the new 7-8, never the abandoned 7-10.
    const after = await connect(v2(splitter, 'cursor=5'), ['xrpc.v1.json'])
    await after.waitForCount(4, 'the events from seq 5')
    expect(after.events.map((m) => `${m.payload.seq} ${m.payload.did}`)).toEqual(['5 did:plc:old5', '6 did:plc:old6', '7 did:plc:new7', '8 did:plc:new8'])
    upstream.emit(frame('new', 9))
    await after.waitForCount(5, 'the next live event')
    expect(after.events.at(-1)!.payload.did).toBe('did:plc:new9')
  }, 120_000)
})
