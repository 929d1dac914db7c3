/**
 * Jetstream v2 `network.bsky.jetstream.subscribeEvents` end to end (lexicon in assets/jetstream/):
 * real events through the real ingest path, the xrpc.v1.json subprotocol and message envelope,
 * #sync emitted, kinds/dids/collections filters, inclusive seq cursors, CursorTooOld before the
 * upgrade, a clamped time cursor announced by #info OutdatedCursor, zstd frames with the v2
 * dictionary (decoded by the zstd CLI, fetched with getZstdDictionary), and server-push only.
 */
import { readFileSync } from 'node:fs'
import { connect } from 'node:net'
import { once } from 'node:events'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { Relay } from '../../src/relay.js'
import { dictionaryPath, V2_DICTIONARY_FILE } from '../../src/jetstream/zstd.js'
import { createPostgresDatabase } from '../helpers/db.js'
import { LoopbackPlc } from '../helpers/loopback-plc.js'
import { FirehoseClient, type FirehoseEvent } from '../helpers/firehose-client.js'
import { apiUrl, linkOf, startTestRelay } from '../helpers/relay.js'
import { Ledger, post, startHost, type TestHost } from '../relay/accounts.js'
import { RawJetClient, refusedUpgrade, zstdCliDecode, type JetJson } from './helpers.js'

const cleanups: (() => Promise<unknown>)[] = []
afterAll(async () => {
  for (const fn of cleanups.reverse()) await fn().catch(() => undefined)
})

let relay: Relay
let firehose: FirehoseClient
let host: TestHost
const ledger = new Ledger()
const NS = 'network.bsky.jetstream.subscribeEvents'

function v2Url(query = ''): string {
  return `ws://127.0.0.1:${relay.apiAddress.port}/xrpc/${NS}${query ? `?${query}` : ''}`
}


/** One line per v2 message payload: kind, did, seq and what tells two of a kind apart. */
function keyOfV2(m: JetJson): string {
  const p = m.payload as JetJson
  const kind = String(p.$type).split('#')[1]
  if (kind === 'commit') return `${p.seq} ${p.did} commit ${p.operation} ${p.collection}/${p.rkey} ${p.cid ?? '-'}`
  if (kind === 'sync') return `${p.seq} ${p.did} sync ${p.sync.rev}`
  return `${p.seq} ${p.did} ${kind}`
}

function expectedV2(events: FirehoseEvent[], f: { kinds?: string[]; dids?: string[]; collections?: string[] } = {}): string[] {
  const out: string[] = []
  for (const e of events) {
    const kind = e.t.slice(1)
    if (f.kinds && !f.kinds.includes(kind)) continue
    if (f.dids && !f.dids.includes(e.did)) continue
    if (e.t === '#commit') {
      for (const op of e.body.ops as { action: string; path: string; cid: unknown }[]) {
        if (f.collections && !f.collections.includes(op.path.split('/')[0]!)) continue
        out.push(`${e.seq} ${e.did} commit ${op.action} ${op.path} ${linkOf(op.cid) ?? '-'}`)
      }
    } else if (e.t === '#sync') out.push(`${e.seq} ${e.did} sync ${String(e.body.rev)}`)
    else out.push(`${e.seq} ${e.did} ${kind}`)
  }
  return out
}

async function connectV2(query: string): Promise<RawJetClient> {
  const c = await RawJetClient.connect(v2Url(query), {}, ['xrpc.v1.json'])
  cleanups.push(() => c.close())
  return c
}

describe('Jetstream v2 subscribeEvents', () => {
  beforeAll(async () => {
    const db = await createPostgresDatabase()
    cleanups.push(() => db.drop())
    const plc = await LoopbackPlc.start()
    cleanups.push(() => plc.close())
    const handles = new Map<string, string>()
    relay = await startTestRelay({ databaseUrl: db.url, plcUrl: plc.url, handles })
    cleanups.push(() => relay.stop())
    firehose = await FirehoseClient.connect(relay, 0)
    cleanups.push(() => firehose.close())
    host = await startHost(relay, plc, handles, ledger, { accounts: 2 })
    cleanups.push(() => host.pds.close())
    const [alice, bob] = host.accounts as [TestHost['accounts'][0], TestHost['accounts'][0]]
    const c1 = await alice.createRecord('app.bsky.feed.post', { $type: 'app.bsky.feed.post', text: 'v2', createdAt: new Date().toISOString() }, '3jzfcijpj2z2a')
    const c2 = await bob.createRecord('app.bsky.graph.follow', { $type: 'app.bsky.graph.follow', subject: alice.did, createdAt: new Date().toISOString() })
    const c3 = await alice.deleteRecord('app.bsky.feed.post/3jzfcijpj2z2a')
    // A commit the relay never sees, then a #sync to its rev: the relay forwards the #sync (rev newer than its head).
    await bob.createRecord('app.bsky.feed.like', { $type: 'app.bsky.feed.like', subject: { uri: `at://${alice.did}/app.bsky.feed.post/x`, cid: String(c1.meta.ops[0]!.cid) }, createdAt: new Date().toISOString() })
    const sync = await bob.syncEvent()
    ledger.publish(host.pds, c1, c2, c3, sync, alice.identityEvent(), bob.accountEvent(false, 'deactivated'), bob.accountEvent(true), await post(alice))
    await ledger.expectAllForwarded(firehose)
    expect(firehose.events.some((e) => e.t === '#sync')).toBe(true)
  }, 120_000)

  it('speaks xrpc.v1.json: message envelopes from an inclusive seq cursor, every kind including #sync', async () => {
    const first = firehose.events[0]!.seq
    const c = await connectV2(`cursor=${first}`)
    expect(c.ws.protocol).toBe('xrpc.v1.json')
    const want = expectedV2(firehose.events)
    await c.waitForCount(want.length, 'every event')
    expect(c.events.slice(0, want.length).map(keyOfV2)).toEqual(want)
    for (const m of c.events) {
      expect(m.$type).toBe('message')
      expect(m.payload.time).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/)
    }
    const syncMessage = c.events.find((m) => m.payload.$type === `${NS}#sync`)!
    expect(syncMessage.payload.sync.blocks.$bytes).toMatch(/^[A-Za-z0-9+/]+$/)
    const create = c.events.find((m) => m.payload.operation === 'create')!
    expect(create.payload.record.$type).toBe(create.payload.collection)
    // Inclusive: a cursor at the seq of the last event replays that event.
    const last = firehose.events.at(-1)!.seq
    const again = await connectV2(`cursor=${last}`)
    await again.waitForCount(1, 'the event at the cursor')
    expect(again.events[0]!.payload.seq).toBe(last)
  }, 60_000)

  it('applies kinds, dids and collections together (collections only constrain commits)', async () => {
    const alice = host.accounts[0]!.did
    const first = firehose.events[0]!.seq
    const c = await connectV2(`cursor=${first}&dids=${alice}&collections=app.bsky.feed.post`)
    const want = expectedV2(firehose.events, { dids: [alice], collections: ['app.bsky.feed.post'] })
    expect(want.some((k) => k.includes(' identity'))).toBe(true)
    await c.waitForCount(want.length, 'alice events')
    expect(c.events.slice(0, want.length).map(keyOfV2)).toEqual(want)
    const onlyAccounts = await connectV2(`cursor=${first}&kinds=account&kinds=sync`)
    const wantAccounts = expectedV2(firehose.events, { kinds: ['account', 'sync'] })
    await onlyAccounts.waitForCount(wantAccounts.length, 'account and sync events')
    expect(onlyAccounts.events.slice(0, wantAccounts.length).map(keyOfV2)).toEqual(wantAccounts)
  }, 60_000)

  it('a time cursor older than the log is clamped and announced with #info OutdatedCursor', async () => {
    const c = await connectV2('cursor=1000000000000000')
    const want = expectedV2(firehose.events)
    await c.waitForCount(want.length + 1, 'the notice and every event')
    expect(c.events[0]).toMatchObject({ $type: 'message', payload: { $type: `${NS}#info`, name: 'OutdatedCursor' } })
    expect(c.events.slice(1, want.length + 1).map(keyOfV2)).toEqual(want)
  }, 60_000)

  it('zstdDictionary=<id> sends binary zstd frames of the exact text frames, made with the dictionary getZstdDictionary serves', async () => {
    const res = await fetch(apiUrl(relay, '/xrpc/network.bsky.jetstream.getZstdDictionary'))
    expect(res.status).toBe(200)
    expect(res.headers.get('content-type')).toBe('application/octet-stream')
    const dictionary = Buffer.from(await res.arrayBuffer())
    expect(dictionary.equals(readFileSync(dictionaryPath(V2_DICTIONARY_FILE)))).toBe(true)
    const id = dictionary.readUInt32LE(4)
    expect((await fetch(apiUrl(relay, `/xrpc/network.bsky.jetstream.getZstdDictionary?id=${id}`))).status).toBe(200)
    const missing = await fetch(apiUrl(relay, `/xrpc/network.bsky.jetstream.getZstdDictionary?id=${id + 1}`))
    expect(missing.status).toBe(400)
    expect((await missing.json()) as unknown).toMatchObject({ error: 'DictionaryNotFound' })

    const first = firehose.events[0]!.seq
    const text = await connectV2(`cursor=${first}`)
    const zstd = await connectV2(`cursor=${first}&zstdDictionary=${id}`)
    const want = expectedV2(firehose.events)
    await text.waitForCount(want.length, 'text frames')
    await zstd.waitForCount(want.length, 'zstd frames')
    expect(zstd.text).toHaveLength(0)
    const decoded = zstdCliDecode(zstd.binary.slice(0, want.length), V2_DICTIONARY_FILE).map((b) => b.toString('utf8'))
    expect(decoded).toEqual(text.text.slice(0, want.length).map((b) => b.toString('utf8')))
  }, 60_000)

  it('answers 400 before the upgrade for bad parameters, legacy names, an old seq cursor and an unknown dictionary', async () => {
    const oldest = firehose.events[0]!.seq
    const cases: [string, string, RegExp][] = [
      ['wantedCollections=app.bsky.feed.post', 'InvalidRequest', /wantedCollections is a v1/],
      ['wantedDids=did:plc:x', 'InvalidRequest', /wantedDids is a v1/],
      ['kinds=post', 'InvalidRequest', /kinds/],
      ['kinds=identity&collections=app.bsky.feed.post', 'InvalidRequest', /collections/],
      ['collections=nope', 'InvalidRequest', /collections/],
      ['dids=alice', 'InvalidRequest', /dids/],
      ['cursor=later', 'InvalidRequest', /cursor/],
      ['maxMessageSizeBytes=-1', 'InvalidRequest', /maxMessageSizeBytes/],
      ['zstdDictionary=7', 'UnknownZstdDictionary', /current one is \d+/],
      [`cursor=${oldest - 1}`, 'CursorTooOld', new RegExp(`oldest retained seq ${oldest}`)],
    ]
    for (const [query, error, message] of cases) {
      const answer = await refusedUpgrade(v2Url(query), { headers: { 'Sec-WebSocket-Protocol': 'xrpc.v1.json' } })
      expect(answer.status, query).toBe(400)
      const body = JSON.parse(answer.body) as { error: string; message: string }
      expect(body.error, query).toBe(error)
      expect(body.message, query).toMatch(message)
    }
    const wrongProtocol = await refusedUpgrade(v2Url(), { headers: { 'Sec-WebSocket-Protocol': 'graphql-ws' } })
    expect(wrongProtocol.status).toBe(400)
  }, 60_000)

  it('after a takedown, replay (through the in-memory ring) leaves out the account\'s events and carries the takedown', async () => {
    const bob = host.accounts[1]!.did
    await relay.admin.takedown(bob)
    const replay = await FirehoseClient.connect(relay, 0)
    cleanups.push(() => replay.close())
    await replay.waitFor((ev) => ev.some((e) => e.did === bob && e.t === '#account' && e.body.status === 'takendown'), 'the takedown #account')
    expect(replay.events.filter((e) => e.did === bob).map((e) => e.t)).toEqual(['#account'])
    const first = replay.events[0]!.seq
    const c = await connectV2(`cursor=${first}`)
    const want = expectedV2(replay.events)
    await c.waitForCount(want.length, 'the replay after the takedown')
    expect(c.events.slice(0, want.length).map(keyOfV2)).toEqual(want)
    expect(c.events.filter((m) => m.payload.did === bob).map((m) => m.payload.$type)).toEqual([`${NS}#account`])
  }, 60_000)

  it('clients that reset the connection while their upgrade waits on the log do not take the relay down', async () => {
    // A seq cursor the log still holds: the takedown above may have removed seq 1 (whose event it is depends on arrival order).
    const oldest = await relay.sequencer.eventLog.oldestSeq()
    expect(oldest).toBeDefined()
    const request =
      `GET /xrpc/network.bsky.jetstream.subscribeEvents?cursor=${oldest} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
      'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: xrpc.v1.json\r\n\r\n'
    for (let i = 0; i < 30; i++) {
      const socket = connect(relay.apiAddress.port, '127.0.0.1')
      await once(socket, 'connect')
      socket.on('error', () => undefined)
      socket.write(request)
      socket.resetAndDestroy() // a TCP RST while the relay looks up the oldest seq
    }
    const c = await connectV2(`cursor=${oldest}`)
    await c.waitForCount(1, 'a message for a well-behaved subscriber afterwards')
    expect(c.events[0]!.$type).toBe('message')
  }, 60_000)

  it('is server-push only: a client data frame closes the connection, counted', async () => {
    const c = await connectV2('')
    c.send({ type: 'options_update', payload: {} })
    await c.waitClosed()
    expect(c.closeCode).toBe(1008)
    const cutOffs = await relay.registry.getSingleMetric('relay_jetstream_cut_off_total')!.get()
    expect(cutOffs.values.find((v) => v.labels.reason === 'client-message')?.value).toBe(1)
  }, 30_000)
})
