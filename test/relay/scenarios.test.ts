/**
 * Fixture conformance through the whole relay: frames served by a fake host
 * over a real WebSocket, admitted with requestCrawl, read back from the
 * relay's own firehose. indigo's relay scenarios (forward exactly the
 * messages not marked `drop`, in order) and a real PDS's frames.
 */
import { readFileSync, readdirSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { decodeFrame } from '../../src/atproto/frame.js'
import type { Relay } from '../../src/relay.js'
import { createPostgresDatabase } from '../helpers/db.js'
import { FakePds } from '../helpers/fake-pds.js'
import { encodeEventFrame } from '../helpers/frames.js'
import { comparable, fromJsonModel } from '../ingest/harness.js'
import { DidDocServer, didDocument, healthStatus, hostStatus, requestCrawl, startTestRelay } from '../helpers/relay.js'
import { FirehoseClient } from '../helpers/firehose-client.js'
import { waitUntil } from '../helpers/wait.js'

const scenarioDir = fileURLToPath(new URL('../fixtures/indigo/relay-scenarios/', import.meta.url))
const pdsDir = fileURLToPath(new URL('../fixtures/pds-scenario/', import.meta.url))

interface Scenario {
  lenient: boolean
  accounts: { identity: { did: string; handle: string; keys: { atproto: { type: string; publicKeyMultibase: string } } } }[]
  messages: { frame: { header: { op: number; t: string }; body: Record<string, unknown> }; drop: boolean }[]
}

let docs: DidDocServer
beforeAll(async () => {
  docs = await DidDocServer.start()
})
afterAll(async () => {
  await docs.close()
})

/** Per test: closed in reverse order. */
let cleanups: (() => Promise<unknown>)[] = []
afterEach(async () => {
  for (const fn of cleanups.reverse()) await fn()
  cleanups = []
})

interface World {
  relay: Relay
  pds: FakePds
  reader: FirehoseClient
}

/** A fresh database, relay, fake host (crawled and connected) and firehose reader. */
async function world(handles: Map<string, string>, lenient: boolean, setDocs: (pdsUrl: string) => void): Promise<World> {
  const db = await createPostgresDatabase()
  cleanups.push(() => db.drop())
  const pds = await FakePds.start()
  cleanups.push(() => pds.close())
  docs.docs.clear()
  setDocs(pds.url)
  const relay = await startTestRelay({ databaseUrl: db.url, plcUrl: docs.url, handles, lenient })
  cleanups.push(() => relay.stop())
  const reader = await FirehoseClient.connect(relay, 0)
  cleanups.push(() => reader.close())
  await requestCrawl(relay, pds.hostname)
  // The relay subscribes live (no stored cursor): publish only once it is there.
  await pds.waitForConnections(1)
  await waitUntil(() => pds.openConnections === 1, 'the relay subscription to open')
  return { relay, pds, reader }
}

describe('indigo relay scenarios through the crawler', () => {
  const files = readdirSync(scenarioDir).filter((f) => f.endsWith('.json')).sort()
  it('has all five scenarios', () => {
    expect(files).toEqual(['account_lifecycle.json', 'deactivation.json', 'legacy.json', 'post_lifecycle.json', 'rev_ordering.json'])
  })

  for (const file of files) {
    it(file, async () => {
      const scenario = JSON.parse(readFileSync(scenarioDir + file, 'utf8')) as Scenario
      const handles = new Map(scenario.accounts.map((a) => [a.identity.handle, a.identity.did]))
      const { relay, pds, reader } = await world(handles, scenario.lenient, (pdsUrl) => {
        for (const a of scenario.accounts) docs.docs.set(a.identity.did, didDocument(a.identity.did, a.identity.handle, a.identity.keys.atproto, pdsUrl))
      })

      const expected: { t: string; body: unknown }[] = []
      for (const m of scenario.messages) {
        const body = fromJsonModel(m.frame.body) as Record<string, unknown>
        const seq = body.seq as number
        pds.emit(encodeEventFrame({ t: m.frame.header.t as '#commit', body }, seq), { seq })
        if (!m.drop) expected.push({ t: m.frame.header.t, body: comparable(body) })
      }
      const lastSeq = scenario.messages[scenario.messages.length - 1]!.frame.body.seq as number
      const dropCount = scenario.messages.length - expected.length

      // Done when every kept message is out and every message was handled (the stored host cursor reached the last).
      await reader.waitFor((ev) => ev.length >= expected.length, () => `${expected.length} events (have ${reader.events.length})`)
      await waitUntil(async () => (await hostStatus(relay, pds.hostname)).seq === lastSeq, `host cursor ${lastSeq}`)

      expect(reader.events.map((o) => ({ t: o.t, body: comparable(o.body) }))).toEqual(expected)
      const seqs = reader.events.map((o) => o.seq)
      expect(seqs).toEqual(seqs.map((_, i) => seqs[0]! + i))
      const status = await hostStatus(relay, pds.hostname)
      expect(status.status).toBe('active')
      const dropped = relay.stats.snapshot(pds.hostname).dropped
      expect(Object.values(dropped).reduce((a, b) => a + b, 0)).toBe(dropCount)
      expect(status.events?.dropped).toEqual(dropped)
      if (file === 'rev_ordering.json') expect(dropped).toEqual({ duplicate: 1, 'bad-syntax': 1 })
      if (file === 'deactivation.json') expect(dropped).toEqual({ inactive: 1 })
      if (file === 'account_lifecycle.json') expect(status.accountCount).toBe(0)
      expect(reader.errors).toEqual([])
      expect(await healthStatus(relay)).toBe(200)
    })
  }
})

describe('PDS scenario frames through the crawler', () => {
  it('forwards everything but repeated #syncs, the deletion included', async () => {
    const fixture = JSON.parse(readFileSync(pdsDir + 'did-docs.json', 'utf8')) as { docs: Record<string, { doc: Record<string, unknown> }> }
    const handles = new Map<string, string>()
    for (const [did, { doc }] of Object.entries(fixture.docs)) handles.set(String((doc.alsoKnownAs as string[])[0]).replace('at://', ''), did)
    const { relay, pds, reader } = await world(handles, false, (pdsUrl) => {
      for (const [did, { doc }] of Object.entries(fixture.docs)) {
        // The recorded PDS port is long gone: point the documents at the fake host.
        const service = (doc.service as Record<string, unknown>[]).map((s) => (s.id === '#atproto_pds' ? { ...s, serviceEndpoint: pdsUrl } : s))
        docs.docs.set(did, { ...doc, service })
      }
    })

    const input = readFileSync(pdsDir + 'frames.jsonl', 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { t: string; seq: number; b64: string })
      .map((j) => ({ ...j, bytes: new Uint8Array(Buffer.from(j.b64, 'base64')) }))
    const decoded = input.map((e) => ({ ...e, body: bodyOf(e.bytes) }))
    for (const e of input) pds.emit(e.bytes, { seq: e.seq })

    // A #sync repeating the rev of a commit already forwarded is a no-op (DESIGN §6); everything else goes out.
    const isRepeatedSync = (e: (typeof decoded)[number]) =>
      e.t === '#sync' && decoded.some((p) => p.seq < e.seq && p.t === '#commit' && p.body.repo === e.body.did && p.body.rev === e.body.rev)
    const forwarded = decoded.filter((e) => !isRepeatedSync(e))
    expect(decoded.length - forwarded.length).toBe(4)

    await reader.waitFor((ev) => ev.length >= forwarded.length, () => `${forwarded.length} events (have ${reader.events.length})`)
    await waitUntil(async () => (await hostStatus(relay, pds.hostname)).seq === 29, 'host cursor 29')
    expect(reader.events).toHaveLength(forwarded.length)
    expect(relay.stats.snapshot(pds.hostname).dropped).toEqual({ duplicate: 4 })

    const didOf = (e: { t: string; body: Record<string, unknown> }) => (e.t === '#commit' ? e.body.repo : e.body.did) as string
    for (const did of Object.keys(fixture.docs)) {
      const mine = reader.of(did)
      const theirs = forwarded.filter((e) => didOf(e) === did)
      expect(mine.map((o) => o.t)).toEqual(theirs.map((e) => e.t))
      mine.forEach((o, i) => {
        const e = theirs[i]!
        if (o.t === '#commit' || o.t === '#sync') expect(comparable(o.body)).toEqual(comparable(e.body))
        if (o.t === '#account') expect({ active: o.body.active, status: o.body.status }).toEqual({ active: e.body.active, status: e.body.status })
      })
    }
    // The relay's own seqs: consecutive, in order.
    const seqs = reader.events.map((o) => o.seq)
    expect(seqs).toEqual(seqs.map((_, i) => seqs[0]! + i))

    // bob is deleted at the end: #account deleted goes out, he no longer counts on the host.
    const bob = 'did:plc:nq75q32vvlzgaq2mj7yf7rwv'
    const last = reader.of(bob).at(-1)!
    expect(last.t).toBe('#account')
    expect({ active: last.body.active, status: last.body.status }).toEqual({ active: false, status: 'deleted' })
    const status = await hostStatus(relay, pds.hostname)
    expect(status.accountCount).toBe(2)
    expect((await relay.ingest.accountStatus(bob))?.combined).toEqual({ active: false, status: 'deleted' })

    // carol's first #identity (carol.test) no longer verifies against her current document; the later one does.
    const carol = 'did:plc:vhwjwohmwnnav5glhrpthxgu'
    expect(reader.of(carol).filter((o) => o.t === '#identity').map((o) => o.body.handle)).toEqual([undefined, 'carol2.test'])
    expect(reader.errors).toEqual([])
  })
})

function bodyOf(bytes: Uint8Array): Record<string, unknown> {
  const frame = decodeFrame(bytes)
  if (frame.op !== 1) throw new Error('fixture frame is not a message')
  return frame.body
}
