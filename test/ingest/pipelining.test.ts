/**
 * An account's events pipelined through ingest: the next one is checked against the head the
 * previous one set as soon as the sequencer has taken it, not after its commit (one busy account
 * otherwise runs at one event per commit round trip and fills its host's queue). The commits are
 * held on a row lock here, so what runs before a commit is seen, not raced.
 */
import pg from 'pg'
import { afterEach, describe, expect, it } from 'vitest'
import { SEQ_STATE_KEY } from '../../src/sequencer/sequencer.js'
import { EventKind } from '../../src/storage/types.js'
import { TestAccount } from '../helpers/repo-builder.js'
import type { PdsEvent } from '../helpers/frames.js'
import { waitUntil } from '../helpers/wait.js'
import { createHarness, toFrame, type Harness } from './harness.js'

const HOST = 'pds-a.test'
const post = (text: string) => ({ $type: 'app.bsky.feed.post', text, createdAt: new Date().toISOString() })

let harness: Harness | undefined
let blocker: pg.Client | undefined
afterEach(async () => {
  await blocker?.end()
  blocker = undefined
  await harness?.close()
  harness = undefined
})

/** Holds the seq high-water row, which every batch statement writes: commits wait until `release`. */
async function holdCommits(url: string): Promise<{ release: () => Promise<void> }> {
  blocker = new pg.Client({ connectionString: url })
  await blocker.connect()
  await blocker.query('begin')
  await blocker.query('select value from relay_state where key = $1 for update', [SEQ_STATE_KEY])
  const client = blocker
  return { release: () => client.query('commit').then(() => undefined) }
}

async function setUp(): Promise<{ h: Harness; a: TestAccount; hostId: number; push: (e: PdsEvent) => void; seq: () => number }> {
  const h = (harness = await createHarness('postgres'))
  const host = await h.addHost(HOST)
  const a = await TestAccount.create({ pdsUrl: `https://${HOST}` })
  h.setIdentity(a.did, { key: a.signingKey.did(), pds: `https://${HOST}`, handle: a.handle })
  let seq = 0
  const push = (e: PdsEvent) => {
    seq++
    void h.push(host, toFrame(e, seq), seq)
  }
  for (const e of await a.genesis()) push(e)
  await h.pipeline.idle()
  return { h, a, hostId: host.id, push, seq: () => seq }
}

describe('an account’s events pipelined through ingest', () => {
  it('checks and sequences the next event while the previous commit is held, and still drops a retransmission', async () => {
    const { h, a, hostId, push, seq } = await setUp()
    const before = h.output().length
    const commits: PdsEvent[] = []
    for (let i = 0; i < 3; i++) commits.push(await a.createRecord('app.bsky.feed.post', post(`p${i}`)))
    const held = await holdCommits(h.db.url!)
    for (const c of commits) push(c)
    // All three are with the sequencer though none has committed.
    await waitUntil(() => h.sequencer.queuedEvents() === 3, 'three events of one account taken before any commit')
    expect(h.output()).toHaveLength(before)
    // The account is evicted meanwhile (a retry does this): the database still has the genesis
    // head, but the held account answers, so a retransmitted commit is a duplicate, not new.
    h.pipeline.accounts.forget(a.did)
    const duplicates = h.stats.droppedByReason().duplicate ?? 0
    push(commits[1]!)
    await waitUntil(() => h.stats.droppedByReason().duplicate === duplicates + 1, 'the retransmission dropped as a duplicate')
    await held.release()
    await h.pipeline.idle()
    const out = h.output().slice(before)
    expect(out.map((o) => o.body.rev)).toEqual(commits.map((c) => c.body.rev))
    expect(h.stats.snapshot(HOST).discontinuities).toBe(0)
    expect(h.pipeline.accounts.uncommittedCount).toBe(0)
    expect(h.sequencer.hostCursor(hostId)).toBe(seq())
  })

  it('runs a takedown after the account’s held events have committed, so they leave the log with the rest', async () => {
    const { h, a, push } = await setUp()
    const held = await holdCommits(h.db.url!)
    const inFlight = await a.createRecord('app.bsky.feed.post', post('in flight'))
    push(inFlight)
    await waitUntil(() => h.sequencer.queuedEvents() === 1, 'the commit taken and held')
    // What the takedown finds when it starts: the account's held event already committed.
    let committedWhenTakedownStarted: boolean | undefined
    const setLocalStatus = h.pipeline.accounts.setLocalStatus.bind(h.pipeline.accounts)
    h.pipeline.accounts.setLocalStatus = (acct, status) => {
      committedWhenTakedownStarted ??= h.output().some((o) => o.body.rev === inFlight.body.rev)
      return setLocalStatus(acct, status)
    }
    const takedown = h.pipeline.takedown(a.did)
    await held.release()
    const down = await takedown
    expect(committedWhenTakedownStarted).toBe(true)
    await h.pipeline.idle()
    const logged = await h.db.storage.db.selectFrom('event').select(['kind']).where('account_id', '=', down.accountId).execute()
    expect(logged.map((r) => r.kind)).toEqual([EventKind.account])
    expect(h.output().at(-1)).toMatchObject({ t: '#account', did: a.did, body: { active: false, status: 'takendown' } })
  })
})
