/**
 * Upstream tickets end to end: a real crawler connection feeding the real
 * ingest pipeline and sequencer on Postgres. Whatever stage throws, the host
 * cursor never stalls behind the failed event and never passes an event that
 * was neither committed nor dropped.
 */
import { decode } from '@atcute/cbor'
import { afterEach, describe, expect, it } from 'vitest'
import { Registry } from 'prom-client'
import { encodeMessageFrame } from '../../src/atproto/frame.js'
import { Crawler } from '../../src/crawler/crawler.js'
import type { VerifyRequest, Verifier } from '../../src/ingest/verify-runner.js'
import type { UpstreamTicket } from '../../src/sequencer/host-cursors.js'
import type { AcceptedEvent } from '../../src/sequencer/types.js'
import type { PdsEvent } from '../helpers/frames.js'
import { TestAccount } from '../helpers/repo-builder.js'
import { createHarness, type Harness } from '../ingest/harness.js'
import { FakeHost, TEST_CRAWLER_SETTINGS } from './fake-host.js'
import { waitUntil } from '../helpers/wait.js'

const cleanups: (() => Promise<void>)[] = []
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c()
})

interface Rig {
  h: Harness
  f: FakeHost
  hostId: number
  crawler: Crawler
  /** Every ticket the crawler opened. */
  tickets: UpstreamTicket[]
  /** Sends frames on the open connection with consecutive seqs; returns the last seq. */
  send(...frames: (PdsEvent | { t: string; body: Record<string, unknown> })[]): number
  account(): Promise<TestAccount>
  dbCursor(): Promise<number>
}

async function rig(): Promise<Rig> {
  const h = await createHarness('postgres', { maxAttempts: 2 })
  cleanups.push(() => h.close())
  const f = await FakeHost.start()
  cleanups.push(() => f.destroy())
  const host = await h.addHost(f.hostname, { ssl: false })
  const tickets: UpstreamTicket[] = []
  const crawler = new Crawler({
    storage: h.db.storage,
    sink: h.pipeline,
    stats: h.stats,
    sequencer: {
      hostCursor: (id) => h.sequencer.hostCursor(id),
      resetHost: (id) => h.sequencer.resetHost(id),
      openTicket: (id, seq) => {
        const ticket = h.sequencer.openTicket(id, seq)
        tickets.push(ticket)
        return ticket
      },
    },
    ...TEST_CRAWLER_SETTINGS,
    registry: new Registry(),
  })
  cleanups.push(() => crawler.stop())
  await crawler.start()
  const conn = await f.waitForConnections(1)
  let seq = 0
  return {
    h,
    f,
    hostId: host.id,
    crawler,
    tickets,
    send(...frames) {
      for (const e of frames) {
        seq++
        conn.ws.send(encodeMessageFrame(e.t, { ...e.body, seq }))
      }
      return seq
    },
    async account() {
      const a = await TestAccount.create({ pdsUrl: `http://${f.hostname}` })
      h.setIdentity(a.did, { key: a.signingKey.did(), pds: `http://${f.hostname}`, handle: a.handle })
      return a
    },
    async dbCursor() {
      const row = await h.db.storage.db.selectFrom('host').select('cursor').where('id', '=', host.id).executeTakeFirstOrThrow()
      return Number(row.cursor)
    },
  }
}

const post = (text: string) => ({ $type: 'app.bsky.feed.post', text, createdAt: new Date().toISOString() })

describe('upstream tickets', () => {
  it('a throw inside push after the event was taken does not stall the host cursor', async () => {
    const r = await rig()
    const a = await r.account()
    r.send(...(await a.genesis()))
    // The drop of an unknown type throws once (a bug in a counter, say): push throws after taking the event.
    const dropped = r.h.stats.dropped.bind(r.h.stats)
    let thrown = false
    r.h.stats.dropped = (host, reason) => {
      if (reason === 'unknown-type' && !thrown) {
        thrown = true
        throw new Error('injected: counter failed')
      }
      dropped(host, reason)
    }
    r.send({ t: '#weird', body: { did: a.did } })
    const next = await a.createRecord('app.bsky.feed.post', post('after the throw'))
    const last = r.send(next)
    await waitUntil(() => r.h.output().some((o) => o.t === '#commit' && o.body.rev === next.body.rev), 'the next commit', 10_000)
    expect(thrown).toBe(true)
    await waitUntil(() => r.h.sequencer.hostCursor(r.hostId) === last, `in-memory host cursor ${last}`, 10_000)
    await waitUntil(async () => (await r.dbCursor()) === last, `stored host cursor ${last}`, 10_000)
  })

  it('whatever stage throws, the cursor never stalls and never passes an event neither committed nor dropped', async () => {
    const r = await rig()
    const { h } = r
    const healthy = await r.account()
    const victims = { push: await r.account(), identity: await r.account(), verify: await r.account(), state: await r.account(), submit: await r.account() }
    for (const a of [healthy, ...Object.values(victims)]) r.send(...(await a.genesis()))
    const genesisEnd = r.send(await healthy.createRecord('app.bsky.feed.post', post('before')))
    await waitUntil(() => h.sequencer.hostCursor(r.hostId) === genesisEnd, 'genesis committed', 15_000)

    // Never skips: every ticket at or below the cursor was committed or dropped (checked on every poll and commit).
    const skipped: string[] = []
    const checkNoSkip = () => {
      const cursor = h.sequencer.hostCursor(r.hostId) ?? 0
      for (const t of r.tickets) if (t.seq <= cursor && t.state !== 'committed' && t.state !== 'dropped') skipped.push(`${t.seq}:${t.state}@${cursor}`)
    }
    h.sequencer.onCommitted(checkNoSkip)

    // Each victim's next event fails at one stage, every time it is tried.
    const failing = new Set<string>()
    const boom = (stage: string, did: string) => {
      failing.add(stage)
      throw new Error(`injected failure at ${stage} for ${did}`)
    }
    const received = h.stats.received.bind(h.stats)
    let pushArmed = false
    h.stats.received = (hostname, kind) => {
      if (pushArmed && kind === 'commit') {
        pushArmed = false
        boom('push', victims.push.did)
      }
      received(hostname, kind)
    }
    // Each victim's state is also kept out of the in-memory answers, so every event of it goes through the failing call.
    const resolve = h.identity.resolve.bind(h.identity)
    h.identity.resolve = async (did, opts) => (did === victims.identity.did ? boom('identity', did) : resolve(did, opts))
    const cached = h.identity.cached.bind(h.identity)
    h.identity.cached = (did, now) => (did === victims.identity.did ? undefined : cached(did, now))
    const verifier = (h.pipeline as unknown as { verifier: Verifier }).verifier
    const verify = verifier.verify.bind(verifier)
    verifier.verify = async (req: VerifyRequest) => ((decode(req.bodyBytes) as { repo?: string }).repo === victims.verify.did ? boom('verify', victims.verify.did) : verify(req))
    const get = h.pipeline.accounts.get.bind(h.pipeline.accounts)
    h.pipeline.accounts.get = async (did) => (did === victims.state.did ? boom('state', did) : get(did))
    const inMemory = h.pipeline.accounts.inMemory.bind(h.pipeline.accounts)
    h.pipeline.accounts.inMemory = (did) => (did === victims.state.did ? undefined : inMemory(did))
    // Ingest hands events over with take(), which throws when the sequencer refuses one.
    const take = h.sequencer.take.bind(h.sequencer)
    h.sequencer.take = (evt: AcceptedEvent) => (evt.did === victims.submit.did ? boom('submit', evt.did) : take(evt))

    const expected: string[] = []
    const healthyCommit = async (text: string) => {
      const c = await healthy.createRecord('app.bsky.feed.post', post(text))
      expected.push(c.body.rev as string)
      return c
    }
    const victimSeqs: number[] = []
    pushArmed = true
    victimSeqs.push(r.send(await victims.push.createRecord('app.bsky.feed.post', post('push'))))
    r.send(await healthyCommit('h1'))
    for (const stage of ['identity', 'verify', 'state', 'submit'] as const) {
      victimSeqs.push(r.send(await victims[stage].createRecord('app.bsky.feed.post', post(stage))))
      r.send(await healthyCommit(`after ${stage}`))
    }
    const last = r.send(await healthyCommit('last'))

    await waitUntil(
      () => {
        checkNoSkip()
        return h.sequencer.hostCursor(r.hostId) === last
      },
      `host cursor ${last}`,
      20_000,
    )
    await waitUntil(async () => (await r.dbCursor()) === last, `stored host cursor ${last}`, 10_000)
    checkNoSkip()
    expect(skipped).toEqual([])
    expect([...failing].sort()).toEqual(['identity', 'push', 'state', 'submit', 'verify'])
    const committedRevs = h.output().filter((o) => o.t === '#commit' && o.did === healthy.did).map((o) => o.body.rev)
    for (const rev of expected) expect(committedRevs).toContain(rev)
    for (const v of Object.values(victims)) expect(h.output().filter((o) => o.did === v.did && o.t === '#commit')).toHaveLength(1) // genesis only
    expect(r.tickets.filter((t) => t.seq > genesisEnd).map((t) => t.state)).toEqual(
      r.tickets.filter((t) => t.seq > genesisEnd).map((t) => (victimSeqs.includes(t.seq) ? 'dropped' : 'committed')),
    )
    expect(h.stats.droppedByReason()).toMatchObject({ 'ingest-error': 1, 'internal-error': 4 })
    expect(await h.ticketErrors()).toBe(0)
  })
})
