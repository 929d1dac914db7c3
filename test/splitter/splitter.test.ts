/**
 * Splitter mode end to end on loopback: fake hosts → the relay → splitters → consumers.
 * A consumer of a splitter sees exactly the relay's events under the relay's seqs (checked
 * by a raw reader and by @atproto/sync's verifying Firehose), a cursor taken on one splitter
 * works on another, and the sync API is forwarded (redirects passed through, admin not exposed).
 */
import { afterAll, describe, expect, it } from 'vitest'
import type { Relay } from '../../src/relay.js'
import type { Splitter } from '../../src/splitter/index.js'
import { createPostgresDatabase } from '../helpers/db.js'
import { LoopbackPlc } from '../helpers/loopback-plc.js'
import { FirehoseClient, type FirehoseEvent } from '../helpers/firehose-client.js'
import { apiUrl, startTestRelay } from '../helpers/relay.js'
import { waitUntil } from '../helpers/wait.js'
import { keyOfEvent, Ledger, startHost, streamCommits } from '../relay/accounts.js'
import { startTestSplitter, splitterUrl } from './harness.js'

const cleanups: (() => Promise<unknown>)[] = []
afterAll(async () => {
  for (const fn of cleanups.reverse()) await fn().catch(() => undefined)
})

const view = (events: FirehoseEvent[]) => events.map((e) => `${e.seq} ${keyOfEvent(e.t, e.body)} ${e.did}`)

async function waitOpen(splitter: Splitter): Promise<void> {
  await waitUntil(() => splitter.upstream.status().state === 'open', 'the splitter to subscribe to the relay', 30_000)
}

describe('splitter ← relay ← fake hosts', () => {
  let relay: Relay
  let plc: LoopbackPlc
  let splitterA: Splitter
  let splitterB: Splitter
  const handles = new Map<string, string>()
  const ledger = new Ledger()

  it('serves exactly the relay events under the relay seqs; a cursor from one splitter works on another', async () => {
    const relayDb = await createPostgresDatabase()
    cleanups.push(() => relayDb.drop())
    const splitterDb = await createPostgresDatabase()
    cleanups.push(() => splitterDb.drop())
    plc = await LoopbackPlc.start()
    cleanups.push(() => plc.close())
    relay = await startTestRelay({ databaseUrl: relayDb.url, plcUrl: plc.url, handles })
    cleanups.push(() => relay.stop())
    // A (Postgres) and B (embedded PGlite, the default): both follow the relay from now on.
    splitterA = await startTestSplitter({ upstream: apiUrl(relay, ''), databaseUrl: splitterDb.url, env: { RELAY_SPLITTER_LIST_CACHE: '1h' } })
    cleanups.push(() => splitterA.stop())
    splitterB = await startTestSplitter({ upstream: `ws://127.0.0.1:${relay.apiAddress.port}` })
    cleanups.push(() => splitterB.stop())
    await waitOpen(splitterA)
    await waitOpen(splitterB)

    const direct = await FirehoseClient.connect(relay, null)
    cleanups.push(() => direct.close())
    const live = await FirehoseClient.connect(splitterA, null)
    cleanups.push(() => live.close())
    const host = await startHost(relay, plc, handles, ledger, { accounts: 3 })
    cleanups.push(() => host.pds.close())
    const stream = streamCommits(host, ledger, { intervalMs: 5, min: 30, mixed: true })
    await stream.stop()
    await ledger.expectAllForwarded(direct)
    ledger.expectOutputValid(direct)
    const total = direct.events.length
    expect(total).toBeGreaterThanOrEqual(33)

    // Live from the splitter: byte for byte the relay's stream (same seqs, same events, same order).
    await live.waitFor((ev) => ev.length >= total, 'the live splitter consumer to get every event')
    expect(view(live.events)).toEqual(view(direct.events))
    expect(live.events.map((e) => e.body)).toEqual(direct.events.map((e) => e.body))
    expect(live.errors).toEqual([])

    // A replay from cursor 0 on each splitter: the same again, from their logs.
    for (const s of [splitterA, splitterB]) {
      await waitUntil(() => s.log.currentSeq() === relay.sequencer.currentSeq(), 'the splitter to store everything')
      const replay = await FirehoseClient.connect(s, 0)
      cleanups.push(() => replay.close())
      await replay.waitFor((ev) => ev.length >= total, 'a full replay from the splitter')
      expect(view(replay.events)).toEqual(view(direct.events))
      await replay.close()
    }

    // A cursor taken on A, used on B: B continues exactly after it.
    const cursor = live.events[Math.floor(total / 2)]!.seq
    const moved = await FirehoseClient.connect(splitterB, cursor)
    cleanups.push(() => moved.close())
    const rest = direct.events.filter((e) => e.seq > cursor)
    await moved.waitFor((ev) => ev.length >= rest.length, 'the moved consumer to get the rest')
    expect(view(moved.events)).toEqual(view(rest))

    // Future cursor on a splitter: the FutureCursor error frame, as the relay answers it.
    const future = await FirehoseClient.connect(splitterA, relay.sequencer.currentSeq() + 100)
    await waitUntil(() => future.isClosed, 'the future-cursor consumer to be closed')
    expect(future.errors.join(' ')).toContain('FutureCursor')

    // Stored as the relay stored them: frames byte-identical, account 0, no commit CID.
    const relayRows = await relay.storage.db.selectFrom('event').select(['seq', 'frame']).orderBy('seq').execute()
    const splitRows = await splitterA.storage.db.selectFrom('event').select(['seq', 'frame', 'account_id', 'commit_cid']).orderBy('seq').execute()
    expect(splitRows.map((r) => r.seq)).toEqual(relayRows.filter((r) => r.seq >= live.events[0]!.seq).map((r) => r.seq))
    for (const [i, r] of splitRows.entries()) {
      const mine = relayRows.find((x) => x.seq === r.seq)!
      expect(Buffer.from(r.frame).equals(Buffer.from(mine.frame)), `frame ${r.seq}`).toBe(true)
      expect(r.account_id, `row ${i}`).toBe(0)
      expect(r.commit_cid).toBeNull()
    }
  }, 180_000)

  it('@atproto/sync verifies every event from the splitter, under the relay seqs', async () => {
    const consumerMod = await import('../peer/consumer.mjs')
    const consumer = consumerMod.startConsumer({ service: `ws://127.0.0.1:${splitterA.apiAddress.port}`, plcUrl: plc.url, startCursor: 0 })
    cleanups.push(() => consumer.stop())
    const head = splitterA.log.currentSeq()
    await consumer.waitUntil((s) => s.lastRawSeq >= head, 60_000, 'the @atproto/sync consumer to reach the head')
    await waitUntil(() => consumer.caughtUp(), 'the verifying Firehose to catch up', 60_000)
    const state = await consumer.stop()
    expect(state.errors).toEqual([])
    expect(state.rawErrors).toEqual([])
    const seqs = state.frames.map((f) => f.seq)
    const stored = (await splitterA.storage.db.selectFrom('event').select('seq').orderBy('seq').execute()).map((r) => r.seq)
    expect(seqs).toEqual(stored)
    // Every commit op came out of the verifying Firehose with a seq the relay gave it.
    const commitSeqs = new Set(state.frames.filter((f) => f.type === '#commit').map((f) => f.seq))
    const verified = state.events.filter((e) => e.event === 'create' || e.event === 'update' || e.event === 'delete')
    expect(verified.length).toBeGreaterThan(0)
    for (const e of verified) expect(commitSeqs.has(e.seq)).toBe(true)
  }, 120_000)

  it('forwards the sync API: answers as the relay gives them, redirects passed through, no admin', async () => {
    const did = [...ledger.expected.keys()][0]!
    const path = `/xrpc/com.atproto.sync.getLatestCommit?did=${encodeURIComponent(did)}`
    const [fromRelay, fromSplitter] = await Promise.all([fetch(apiUrl(relay, path)), fetch(splitterUrl(splitterA, path))])
    expect(fromSplitter.status).toBe(200)
    expect(await fromSplitter.json()).toEqual(await fromRelay.json())

    const missing = await fetch(splitterUrl(splitterA, '/xrpc/com.atproto.sync.getRepoStatus?did=did:plc:nobodynobodynobody'))
    expect(missing.status).toBe(404)
    expect(((await missing.json()) as { error: string }).error).toBe('RepoNotFound')

    // getRepo is a 302 to the PDS at the relay: the splitter hands the redirect back, unfollowed.
    const repo = await fetch(splitterUrl(splitterA, `/xrpc/com.atproto.sync.getRepo?did=${encodeURIComponent(did)}`), { redirect: 'manual' })
    expect(repo.status).toBe(302)
    expect(repo.headers.get('location')).toMatch(/^http:\/\/localhost:\d+\/xrpc\/com\.atproto\.sync\.getRepo\?did=/)

    // listHosts is cached (A's cache is set long): a new host shows at the relay at once, not in A's cached answer.
    const list = async (url: string) => ((await (await fetch(url)).json()) as { hosts: unknown[] }).hosts.length
    const listPath = '/xrpc/com.atproto.sync.listHosts'
    const before = await list(splitterUrl(splitterA, listPath))
    expect(before).toBe(await list(apiUrl(relay, listPath)))
    const extra = await startHost(relay, plc, handles, ledger, { accounts: 1, genesis: false })
    cleanups.push(() => extra.pds.close())
    expect(await list(apiUrl(relay, listPath))).toBe(before + 1)
    expect(await list(splitterUrl(splitterA, listPath))).toBe(before)
    expect(await list(splitterUrl(splitterA, `${listPath}?limit=100`))).toBe(before + 1)

    // requestCrawl is forwarded: the relay's own answer comes back (and the relay remembers the name it refused).
    const crawl = await fetch(splitterUrl(splitterA, '/xrpc/com.atproto.sync.requestCrawl'), {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ hostname: 'not a hostname' }),
    })
    const crawlBody = (await crawl.json()) as { error: string }
    const direct = await fetch(apiUrl(relay, '/xrpc/com.atproto.sync.requestCrawl'), {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ hostname: 'not a hostname' }),
    })
    expect(crawl.status).toBe(direct.status)
    expect(crawl.status).toBeGreaterThanOrEqual(400)
    const directBody = (await direct.json()) as { error: string; message: string }
    expect(crawlBody.error).toBe(directBody.error)
    expect(directBody.message).toContain('remembered')

    // Admin routes are not there at all.
    const admin = await fetch(splitterUrl(splitterA, '/admin/api/hosts'))
    expect(admin.status).toBe(404)
    expect(splitterA.xrpcMethods.some((m) => m.startsWith('com.atproto.admin'))).toBe(false)

    // Health says which upstream, that it is connected, and how far behind.
    const health = (await (await fetch(splitterUrl(splitterA, '/xrpc/_health'))).json()) as { status: string; mode: string; upstream: { state: string; seq: number; url: string } }
    expect(health.status).toBe('ok')
    expect(health.mode).toBe('splitter')
    expect(health.upstream.state).toBe('open')
    expect(health.upstream.seq).toBe(relay.sequencer.currentSeq())

    // And so do the metrics: mode, upstream, its seq, the lag.
    const metrics = await (await fetch(`http://127.0.0.1:${splitterA.metricsAddress.port}/metrics`)).text()
    expect(metrics).toContain(`relay_splitter_upstream_info{mode="splitter",upstream="${apiUrl(relay, '')}",role="primary"} 1`)
    expect(metrics).toMatch(/^relay_splitter_upstream_connected 1$/m)
    expect(metrics).toMatch(new RegExp(`^relay_splitter_upstream_seq ${relay.sequencer.currentSeq()}$`, 'm'))
    expect(metrics).toMatch(new RegExp(`^relay_splitter_seq ${relay.sequencer.currentSeq()}$`, 'm'))
    expect(Number(/^relay_splitter_upstream_lag_seconds (\S+)$/m.exec(metrics)?.[1])).toBeGreaterThanOrEqual(0)
    expect(metrics).toMatch(/^relay_firehose_connections_total \d+$/m)
  }, 120_000)
})
