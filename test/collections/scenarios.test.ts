/**
 * indigo's post_lifecycle scenario (frames a real PDS produced: a like and a post
 * created then deleted, a profile update, a post with its threadgate and postgate)
 * replayed through the whole relay, the index checked after every event.
 */
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { afterAll, expect, it } from 'vitest'
import { createPostgresDatabase } from '../helpers/db.js'
import { FakePds } from '../helpers/fake-pds.js'
import { encodeEventFrame } from '../helpers/frames.js'
import { FirehoseClient } from '../helpers/firehose-client.js'
import { DidDocServer, didDocument, getJson, requestCrawl, startTestRelay } from '../helpers/relay.js'
import { waitUntil } from '../helpers/wait.js'
import { fromJsonModel } from '../ingest/harness.js'

interface Scenario {
  lenient: boolean
  accounts: { identity: { did: string; handle: string; keys: { atproto: { type: string; publicKeyMultibase: string } } } }[]
  messages: { frame: { header: { op: number; t: string }; body: Record<string, unknown> }; drop: boolean }[]
}

const cleanups: (() => Promise<unknown>)[] = []
afterAll(async () => {
  for (const fn of cleanups.reverse()) await fn().catch(() => undefined)
})

it('post_lifecycle.json: creates add their collections; deletes are decided from the real proofs (the repo keeps older likes and posts)', async () => {
  const file = fileURLToPath(new URL('../fixtures/indigo/relay-scenarios/post_lifecycle.json', import.meta.url))
  const scenario = JSON.parse(readFileSync(file, 'utf8')) as Scenario
  expect(scenario.messages.every((m) => !m.drop)).toBe(true)
  const docs = await DidDocServer.start()
  cleanups.push(() => docs.close())
  const db = await createPostgresDatabase()
  cleanups.push(() => db.drop())
  const pds = await FakePds.start()
  cleanups.push(() => pds.close())
  for (const a of scenario.accounts) docs.docs.set(a.identity.did, didDocument(a.identity.did, a.identity.handle, a.identity.keys.atproto, pds.url))
  const handles = new Map(scenario.accounts.map((a) => [a.identity.handle, a.identity.did]))
  const relay = await startTestRelay({ databaseUrl: db.url, plcUrl: docs.url, handles, lenient: scenario.lenient })
  cleanups.push(() => relay.stop())
  const reader = await FirehoseClient.connect(relay, 0)
  cleanups.push(() => reader.close())
  await requestCrawl(relay, pds.hostname)
  await waitUntil(() => pds.openConnections === 1, 'the relay subscription to open')

  const did = scenario.accounts[0]!.identity.did
  const collections = ['app.bsky.feed.like', 'app.bsky.feed.post', 'app.bsky.actor.profile', 'app.bsky.feed.threadgate', 'app.bsky.feed.postgate']
  const listing = async () => {
    const res = await getJson(relay, `/xrpc/com.atproto.sync.listReposByCollection?${collections.map((c) => `collection=${c}`).join('&')}`)
    expect(res.status).toBe(200)
    const inEach: string[] = []
    for (const c of collections) {
      const one = await getJson(relay, `/xrpc/com.atproto.sync.listReposByCollection?collection=${c}`)
      if ((one.body.repos as { did: string }[]).some((r) => r.did === did)) inEach.push(c)
    }
    return { union: (res.body.repos as { did: string }[]).map((r) => r.did), inEach }
  }
  // After each message: the collections the account is listed in. The real repo behind these frames has
  // older likes and posts (the proof's root node holds two like keys; a post key neighbours the deleted one),
  // so neither delete empties its collection.
  const like = 'app.bsky.feed.like'
  const post = 'app.bsky.feed.post'
  const expected = [
    [like],
    [like],
    [like, post],
    [like, post],
    // An update: the profile record predates what the relay saw (the backfill's job, off here).
    [like, post],
    [like, post, 'app.bsky.feed.threadgate', 'app.bsky.feed.postgate'],
  ]
  for (const [i, m] of scenario.messages.entries()) {
    const body = fromJsonModel(m.frame.body) as Record<string, unknown>
    const seq = body.seq as number
    pds.emit(encodeEventFrame({ t: m.frame.header.t as '#commit', body }, seq), { seq })
    await reader.waitFor((events) => events.length >= i + 1, `message ${i + 1} forwarded`)
    const { union, inEach } = await listing()
    expect(inEach, `after message ${i + 1}`).toEqual(expected[i])
    expect(union, `after message ${i + 1}`).toEqual(expected[i]!.length > 0 ? [did] : [])
  }
  // A real PDS's proof blocks decided every delete.
  const metrics = await (await fetch(`http://127.0.0.1:${relay.metricsAddress.port}/metrics`)).text()
  expect(metrics).toMatch(/^relay_collections_undecided_total 0$/m)
})
