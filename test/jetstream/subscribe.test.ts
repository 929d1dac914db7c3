/**
 * Jetstream v1 `/subscribe` end to end: real signed events from a fake PDS go through the relay's real
 * ingest path, and independent clients (@skyware/jetstream, @atcute/jetstream, plain `ws`) see, per
 * op, exactly the events the relay's CBOR firehose carried: creates, updates, deletes, a multi-op
 * commit, identity and account changes; with collection and DID filters, requireHello and
 * options_update, zstd frames decoded by a different zstd implementation, permessage-deflate, a
 * 400 for every bad parameter, and a time cursor across a relay restart.
 */
import { JetstreamSubscription } from '@atcute/jetstream'
import { lexToJson } from '@atproto/lex-json'
import { Jetstream } from '@skyware/jetstream'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import WebSocket from 'ws'
import type { Relay } from '../../src/relay.js'
import { createPostgresDatabase } from '../helpers/db.js'
import { LoopbackPlc } from '../helpers/loopback-plc.js'
import { FirehoseClient } from '../helpers/firehose-client.js'
import { startTestRelay } from '../helpers/relay.js'
import { waitUntil } from '../helpers/wait.js'
import { Ledger, post, startHost, type TestHost } from '../relay/accounts.js'
import { expectedKeys, keyOf, RawJetClient, refusedUpgrade, subscribeUrl, zstdCliDecode, type JetJson } from './helpers.js'

const cleanups: (() => Promise<unknown>)[] = []
afterAll(async () => {
  for (const fn of cleanups.reverse()) await fn().catch(() => undefined)
})

let dbUrl: string
let plc: LoopbackPlc
const handles = new Map<string, string>()
const ledger = new Ledger()
let relay: Relay
let firehose: FirehoseClient
let host: TestHost
/** Records as written, by path, for comparing record JSON. */
const written = new Map<string, Record<string, unknown>>()
/** The rev of the scenario's three-op commit. */
let multiOpRev = ''

async function startRelayOnDb(): Promise<Relay> {
  const r = await startTestRelay({ databaseUrl: dbUrl, plcUrl: plc.url, handles })
  cleanups.push(() => r.stop())
  return r
}

/** Collects every event a @skyware/jetstream client emits. */
function skyware(url: string, opts: { cursor?: number; wantedCollections?: string[]; wantedDids?: string[] } = {}) {
  const events: JetJson[] = []
  const js = new Jetstream({ endpoint: url, ws: WebSocket, ...opts })
  js.on('commit', (e) => events.push(e as unknown as JetJson))
  js.on('identity', (e) => events.push(e as unknown as JetJson))
  js.on('account', (e) => events.push(e as unknown as JetJson))
  js.start()
  cleanups.push(async () => js.close())
  return { events, close: () => js.close() }
}

/** Collects every event a @atcute/jetstream subscription yields (it validates each against its schema). */
function atcute(url: string, opts: { cursor?: number; wantedCollections?: string[]; wantedDids?: `did:${string}:${string}`[] } = {}) {
  const events: JetJson[] = []
  const errors: unknown[] = []
  const sub = new JetstreamSubscription({ url, ws: { WebSocket }, onError: (err) => errors.push(err), ...opts })
  const iterator = sub[Symbol.asyncIterator]()
  let stopped = false
  void (async () => {
    while (!stopped) {
      const next = await iterator.next()
      if (next.done) break
      events.push(next.value as unknown as JetJson)
    }
  })()
  const close = async () => {
    stopped = true
    await iterator.return?.()
  }
  cleanups.push(close)
  return { events, errors, close }
}

/** time_us is the relay event's: strictly increasing from one relay event to the next, shared by the ops of one commit. */
function expectTimesIncreasing(events: JetJson[]): void {
  for (let i = 1; i < events.length; i++) {
    const [a, b] = [events[i - 1]!, events[i]!]
    const sameCommit = a.kind === 'commit' && b.kind === 'commit' && a.did === b.did && a.commit.rev === b.commit.rev
    if (sameCommit) expect(b.time_us).toBe(a.time_us)
    else expect(b.time_us, `${keyOf(a)} then ${keyOf(b)}`).toBeGreaterThan(a.time_us as number)
  }
}

describe('Jetstream v1 /subscribe', () => {
  beforeAll(async () => {
    const db = await createPostgresDatabase()
    cleanups.push(() => db.drop())
    dbUrl = db.url
    plc = await LoopbackPlc.start()
    cleanups.push(() => plc.close())
    relay = await startRelayOnDb()
    firehose = await FirehoseClient.connect(relay, 0)
    cleanups.push(() => firehose.close())
    host = await startHost(relay, plc, handles, ledger, { accounts: 2 })
    cleanups.push(() => host.pds.close())
    const [alice, bob] = host.accounts as [TestHost['accounts'][0], TestHost['accounts'][0]]

    const postRecord = {
      $type: 'app.bsky.feed.post',
      text: 'hello jetstream',
      createdAt: new Date().toISOString(),
      // A blob ref (CID link), bytes and nesting: the data-model JSON forms.
      embed: { $type: 'app.bsky.embed.images', images: [{ alt: 'x', image: { $type: 'blob', ref: alice.head, mimeType: 'image/png', size: 42 } }] },
      extra: { raw: new Uint8Array([0, 1, 2, 250, 255]), nested: { deeper: [{ n: 1 }, { s: 'two' }] } },
    }
    const c1 = await alice.createRecord('app.bsky.feed.post', postRecord, '3jzfcijpj2z2a')
    written.set('app.bsky.feed.post/3jzfcijpj2z2a', postRecord)
    const like = { $type: 'app.bsky.feed.like', subject: { uri: `at://${alice.did}/app.bsky.feed.post/3jzfcijpj2z2a`, cid: String(c1.meta.ops[0]!.cid) }, createdAt: new Date().toISOString() }
    const c2 = await bob.createRecord('app.bsky.feed.like', like, '3jzfcijpj2z2b')
    written.set('app.bsky.feed.like/3jzfcijpj2z2b', like)
    const edited = { ...postRecord, text: 'hello again' }
    const c3 = await alice.updateRecord('app.bsky.feed.post/3jzfcijpj2z2a', edited)
    const c4 = await bob.deleteRecord('app.bsky.feed.like/3jzfcijpj2z2b')
    const c5 = await alice.commit([
      { action: 'create', collection: 'app.bsky.graph.follow', rkey: '3jzfcijpj2z2c', record: { $type: 'app.bsky.graph.follow', subject: bob.did, createdAt: new Date().toISOString() } },
      { action: 'create', collection: 'app.bsky.feed.repost', rkey: '3jzfcijpj2z2d', record: { $type: 'app.bsky.feed.repost', subject: like.subject, createdAt: new Date().toISOString() } },
      { action: 'delete', path: 'app.bsky.feed.post/3jzfcijpj2z2a' },
    ])
    multiOpRev = c5.meta.rev
    ledger.publish(host.pds, c1, c2, c3, c4, c5, alice.identityEvent(), bob.accountEvent(false, 'deactivated'), bob.accountEvent(true))
    await ledger.expectAllForwarded(firehose)
  }, 120_000)

  it('@skyware/jetstream from an old cursor sees every op of the scenario as the firehose carried it, records as data-model JSON', async () => {
    const all = expectedKeys(firehose.events)
    // The scenario: 2 × (identity, account) at genesis, then 1 + 1 + 1 + 1 + 3 ops, identity, 2 × account.
    expect(all).toHaveLength(4 + 7 + 3)
    const client = skyware(subscribeUrl(relay), { cursor: 1 })
    await waitUntil(() => client.events.length >= all.length, () => `all events (${client.events.length}/${all.length})`, 20_000)
    expect(client.events.map(keyOf)).toEqual(all)
    expectTimesIncreasing(client.events)
    // Records: what was written, in the JSON @atproto/lex-json makes of it ($link for the blob ref, $bytes for bytes).
    const created = client.events.filter((e) => e.kind === 'commit' && e.commit.operation === 'create')
    for (const [path, record] of written) {
      const e = created.find((c) => `${c.commit.collection}/${c.commit.rkey}` === path)
      expect(e, path).toBeDefined()
      expect(e!.commit.record).toEqual(lexToJson(record as Parameters<typeof lexToJson>[0]))
    }
    // Per-DID order is kept; across DIDs the relay may interleave, so the commit is found by its rev.
    const multi = client.events.filter((e) => e.kind === 'commit' && e.commit.rev === multiOpRev)
    expect(multi.map((e) => e.commit.operation)).toEqual(['create', 'create', 'delete'])
    const postJson = JSON.stringify(created.find((c) => c.commit.rkey === '3jzfcijpj2z2a')!.commit.record)
    expect(postJson).toMatch(/"\$link":"bafy/)
    expect(postJson).toContain('"$bytes":"AAEC+v8"')
    client.close()
  }, 60_000)

  it('@atcute/jetstream with wantedCollections and wantedDids gets exactly the matching events (identity and account bypass collections)', async () => {
    const alice = host.accounts[0]!.did as `did:${string}:${string}`
    const client = atcute(subscribeUrl(relay), { cursor: 1, wantedCollections: ['app.bsky.feed.*'], wantedDids: [alice] })
    const want = expectedKeys(firehose.events, { collections: ['app.bsky.feed.*'], dids: [alice] })
    expect(want.length).toBeGreaterThan(3)
    await waitUntil(() => client.events.length >= want.length, () => `filtered events (${client.events.length}/${want.length})`, 20_000)
    expect(client.events.map(keyOf)).toEqual(want)
    expect(client.errors).toEqual([])
    // Live: a new event of bob is filtered out, one of alice arrives.
    const bobPost = await post(host.accounts[1]!)
    const alicePost = await post(host.accounts[0]!)
    ledger.publish(host.pds, bobPost, alicePost)
    await ledger.expectAllForwarded(firehose)
    await waitUntil(() => client.events.length > want.length, 'the live event of alice')
    expect(client.events.slice(want.length).map(keyOf)).toEqual(expectedKeys(firehose.events, { collections: ['app.bsky.feed.*'], dids: [alice] }).slice(want.length))
    await client.close()
  }, 60_000)

  it('zstd frames (compress=true or Socket-Encoding: zstd) decode with the zstd CLI and the shipped dictionary to the same JSON as text frames', async () => {
    const all = expectedKeys(firehose.events)
    const text = await RawJetClient.connect(subscribeUrl(relay, 'cursor=1'))
    const zstdQuery = await RawJetClient.connect(subscribeUrl(relay, 'cursor=1&compress=true'))
    const zstdHeader = await RawJetClient.connect(subscribeUrl(relay, 'cursor=1'), { headers: { 'Socket-Encoding': 'zstd' } })
    cleanups.push(() => text.close(), () => zstdQuery.close(), () => zstdHeader.close())
    for (const c of [text, zstdQuery, zstdHeader]) await c.waitForCount(all.length, 'every event')
    expect(text.binary).toHaveLength(0)
    expect(zstdQuery.text).toHaveLength(0)
    const decoded = zstdCliDecode(zstdQuery.binary)
    expect(decoded.map((b) => b.toString('utf8'))).toEqual(text.text.map((b) => b.toString('utf8')))
    expect(zstdHeader.binary.map((b) => b.toString('base64'))).toEqual(zstdQuery.binary.map((b) => b.toString('base64')))
    expect(text.events.map(keyOf)).toEqual(all)
    const plainBytes = text.text.reduce((n, b) => n + b.length, 0)
    const zstdBytes = zstdQuery.binary.reduce((n, b) => n + b.length, 0)
    expect(zstdBytes).toBeLessThan(plainBytes)
    const metrics = await relay.registry.getMetricsAsJSON()
    const sent = metrics.find((m) => m.name === 'relay_jetstream_messages_sent_total')!.values
    expect(sent.find((v) => v.labels.encoding === 'zstd')!.value).toBeGreaterThanOrEqual(2 * all.length)
    const ratio = metrics.find((m) => m.name === 'relay_jetstream_zstd_ratio')!.values[0]!.value
    // Compressed once per message and shared: the ratio is of each message once, as the two subscribers saw it.
    expect(ratio).toBeCloseTo(zstdBytes / plainBytes, 1)
    console.log(`jetstream zstd on ${all.length} real events: ${zstdBytes} / ${plainBytes} bytes = ${(zstdBytes / plainBytes).toFixed(3)}`)
  }, 60_000)

  it('negotiates permessage-deflate when offered, and refuses it together with zstd', async () => {
    const deflate = await RawJetClient.connect(subscribeUrl(relay, 'cursor=1'), { perMessageDeflate: true })
    cleanups.push(() => deflate.close())
    expect(deflate.ws.extensions).toContain('permessage-deflate')
    const all = expectedKeys(firehose.events)
    await deflate.waitForCount(all.length, 'every event over deflate')
    expect(deflate.events.slice(0, all.length).map(keyOf)).toEqual(all)
    const both = await refusedUpgrade(subscribeUrl(relay, 'compress=true'), { perMessageDeflate: true })
    expect(both.status).toBe(400)
    expect(both.body).toMatch(/permessage-deflate/)
  }, 60_000)

  it('requireHello holds events until an options_update, which also replaces the filter; a bad hello closes', async () => {
    const bob = host.accounts[1]!.did
    const c = await RawJetClient.connect(subscribeUrl(relay, 'cursor=1&requireHello=true'))
    cleanups.push(() => c.close())
    const want = expectedKeys(firehose.events, { dids: [bob], collections: ['app.bsky.graph.follow'] })
    c.send({ type: 'something_else', payload: {} }) // unknown types are ignored, but the hello must be an options_update
    await c.waitClosed()
    expect(c.closeCode).toBe(1008)
    expect(c.events).toEqual([])

    const hello = await RawJetClient.connect(subscribeUrl(relay, 'cursor=1&requireHello=true'))
    cleanups.push(() => hello.close())
    hello.send({ type: 'options_update', payload: { wantedDids: [bob], wantedCollections: ['app.bsky.graph.follow'] } })
    await hello.waitForCount(want.length, 'bob identity and account events only')
    expect(hello.events.slice(0, want.length).map(keyOf)).toEqual(want)

    const bad = await RawJetClient.connect(subscribeUrl(relay, 'requireHello=true'))
    cleanups.push(() => bad.close())
    bad.send({ type: 'options_update', payload: { wantedDids: ['not-a-did'] } })
    await bad.waitClosed()
    expect(bad.closeCode).toBe(1008)
    expect(bad.closeReason).toMatch(/not a DID/)

    const tooMany = await RawJetClient.connect(subscribeUrl(relay))
    cleanups.push(() => tooMany.close())
    tooMany.send({ type: 'options_update', payload: { wantedDids: Array.from({ length: 10_001 }, (_, i) => `did:plc:${String(i).padStart(24, 'a')}`) } })
    await tooMany.waitClosed()
    expect(tooMany.closeReason).toMatch(/at most 10000/)

    // Every cut-off counted by reason.
    const cutOffs = await relay.registry.getSingleMetric('relay_jetstream_cut_off_total')!.get()
    const byReason = Object.fromEntries(cutOffs.values.map((v) => [v.labels.reason, v.value]))
    expect(byReason['bad-hello']).toBe(2)
    expect(byReason['bad-options']).toBe(1)
  }, 60_000)

  it('answers 400 before the upgrade, naming the problem, for every bad parameter', async () => {
    const many = Array.from({ length: 101 }, (_, i) => `wantedCollections=app.bsky.c${i}.x`).join('&')
    const cases: [string, RegExp][] = [
      ['wantedCollections=not_an_nsid', /wantedCollections/],
      ['wantedCollections=app.bsky.*.x', /wantedCollections/],
      ['wantedCollections=*', /wantedCollections/],
      [many, /at most 100/],
      ['wantedDids=alice', /wantedDids/],
      ['wantedDids=did:plc:ok&wantedDids=did%00', /wantedDids/],
      ['cursor=soon', /cursor/],
      ['cursor=-5', /cursor/],
      ['cursor=1&cursor=2', /cursor/],
      ['compress=yes', /compress/],
      ['requireHello=1', /requireHello/],
    ]
    for (const [query, message] of cases) {
      const answer = await refusedUpgrade(subscribeUrl(relay, query))
      expect(answer.status, query).toBe(400)
      expect(JSON.parse(answer.body).message, query).toMatch(message)
    }
    // Jetstream's rule for maxMessageSizeBytes: malformed means no cap, not an error.
    const lenient = await RawJetClient.connect(subscribeUrl(relay, 'maxMessageSizeBytes=lots'))
    await lenient.close()
  }, 60_000)

  it('maxMessageSizeBytes skips larger events for that subscriber only', async () => {
    const all = expectedKeys(firehose.events)
    const full = await RawJetClient.connect(subscribeUrl(relay, 'cursor=1'))
    cleanups.push(() => full.close())
    await full.waitForCount(all.length, 'every event')
    const sizes = full.text.map((b) => b.length)
    const cap = Math.max(...sizes.filter((n) => n < Math.max(...sizes)))
    const capped = await RawJetClient.connect(subscribeUrl(relay, `cursor=1&maxMessageSizeBytes=${cap}`))
    cleanups.push(() => capped.close())
    const want = full.events.filter((_, i) => sizes[i]! <= cap).map(keyOf)
    expect(want.length).toBeLessThan(full.events.length)
    await capped.waitForCount(want.length, 'the events under the cap')
    expect(capped.events.slice(0, want.length).map(keyOf)).toEqual(want)
  }, 60_000)

  it('a hostile options_update (a long multi-byte collection) closes only that subscriber, with a reason within the 123-byte limit', async () => {
    const c = await RawJetClient.connect(subscribeUrl(relay))
    cleanups.push(() => c.close())
    c.send({ type: 'options_update', payload: { wantedCollections: ['é'.repeat(300)] } })
    await c.waitClosed()
    expect(c.closeCode).toBe(1008)
    expect(c.closeReason).toMatch(/^wantedCollections/)
    expect(Buffer.byteLength(c.closeReason)).toBeLessThanOrEqual(123)
    // The relay is still serving: a new subscriber replays the log.
    const after = await RawJetClient.connect(subscribeUrl(relay, 'cursor=1'))
    cleanups.push(() => after.close())
    await after.waitForCount(expectedKeys(firehose.events).length, 'the replayed log after the hostile client')
  }, 60_000)

  it('a time cursor from before a relay restart resumes at that event, with time_us still increasing', async () => {
    const before = await RawJetClient.connect(subscribeUrl(relay, 'cursor=1'))
    const count = firehose.events.length
    const allBefore = expectedKeys(firehose.events)
    await before.waitForCount(allBefore.length, 'every event before the restart')
    await before.close()
    // An event that starts its relay event (not the second op of a commit: those share its time_us).
    const at = before.events.findIndex((e, i) => i >= 5 && e.time_us !== before.events[i - 1]!.time_us)
    const resumeAt = before.events[at]!
    await firehose.close()
    await relay.stop()

    relay = await startRelayOnDb()
    await waitUntil(() => host.pds.openConnections === 1, 'the new relay to resubscribe to the host')
    firehose = await FirehoseClient.connect(relay, 0)
    cleanups.push(() => firehose.close())
    await firehose.waitFor((ev) => ev.length >= count, 'the replayed log')
    const fresh = await post(host.accounts[0]!)
    ledger.publish(host.pds, fresh)
    await ledger.expectAllForwarded(firehose)

    const client = atcute(subscribeUrl(relay), { cursor: resumeAt.time_us as number })
    const want = expectedKeys(firehose.events).slice(at)
    await waitUntil(() => client.events.length >= want.length, () => `events from the cursor on (${client.events.length}/${want.length})`, 20_000)
    expect(client.events.map(keyOf)).toEqual(want)
    expect(client.events[0]!.time_us).toBe(resumeAt.time_us)
    expectTimesIncreasing(client.events)
    await client.close()
  }, 120_000)
})
