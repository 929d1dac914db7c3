/**
 * The ingest pipeline's checks with real signed repos (test/helpers/repo-builder),
 * a real sequencer and Postgres: signatures, host authority, replays, future
 * revs, account moves, limits, status, admin operations and host cursors.
 */
import { afterEach, describe, expect, it } from 'vitest'
import { generateKeypair, TestAccount } from '../helpers/repo-builder.js'
import type { PdsEvent } from '../helpers/frames.js'
import { tidAtOffset } from '../helpers/tid.js'
import type { UpstreamHost } from '../../src/ingest/types.js'
import { waitUntil } from '../helpers/wait.js'
import { createHarness, toFrame, type Harness } from './harness.js'

const HOST_A = 'pds-a.test'
const HOST_B = 'pds-b.test'

let harness: Harness | undefined
afterEach(async () => {
  await harness?.close()
  harness = undefined
})

/** Pushes events as one host's stream with consecutive upstream seqs. */
class Upstream {
  seq = 0
  constructor(
    readonly h: Harness,
    readonly host: UpstreamHost,
  ) {}
  async push(...events: (PdsEvent | { t: string; body: Record<string, unknown> })[]): Promise<void> {
    for (const e of events) {
      const seq = ++this.seq
      await this.h.push(this.host, toFrame(e, seq), seq)
    }
    await this.h.pipeline.idle()
  }
}

async function account(h: Harness, hostname: string): Promise<TestAccount> {
  const a = await TestAccount.create({ pdsUrl: `https://${hostname}` })
  h.setIdentity(a.did, { key: a.signingKey.did(), pds: `https://${hostname}`, handle: a.handle })
  return a
}

async function hostRow(h: Harness, id: number) {
  return h.db.storage.db.selectFrom('host').selectAll().where('id', '=', id).executeTakeFirstOrThrow()
}

const post = (text: string) => ({ $type: 'app.bsky.feed.post', text, createdAt: new Date().toISOString() })

describe('ingest checks', () => {
  it('accepts a new account and its commits; drops the #sync that repeats the head', async () => {
    const h = (harness = await createHarness('postgres'))
    const up = new Upstream(h, await h.addHost(HOST_A))
    const a = await account(h, HOST_A)
    await up.push(...(await a.genesis()))
    await up.push(await a.createRecord('app.bsky.feed.post', post('hello')))
    expect(h.output().map((o) => o.t)).toEqual(['#identity', '#account', '#commit', '#commit'])
    expect(h.stats.droppedByReason()).toEqual({ duplicate: 1 })
    const status = await h.pipeline.accountStatus(a.did)
    expect(status).toMatchObject({ localStatus: 'active', upstreamStatus: 'active', combined: { active: true }, head: { rev: a.rev } })
    const head = await h.db.storage.db.selectFrom('account_head').selectAll().where('account_id', '=', status!.accountId).executeTakeFirstOrThrow()
    expect(head.rev).toBe(a.rev)
    expect((await hostRow(h, up.host.id)).account_count).toBe(1)
    expect(h.stats.snapshot(HOST_A)).toMatchObject({ received: 5, accepted: 4 })
  })

  it('drops a forged signature after exactly one forced identity refresh', async () => {
    const h = (harness = await createHarness('postgres'))
    const up = new Upstream(h, await h.addHost(HOST_A))
    const a = await account(h, HOST_A)
    await up.push(...(await a.genesis()))
    const before = h.resolveCalls.get(a.did) ?? 0
    const forged = await a.createRecord('app.bsky.feed.post', post('forged'))
    // Re-sign the same commit with a stranger's key (the account's repo is not advanced).
    const stranger = generateKeypair('secp256k1')
    const bad = await a.commit({ action: 'create', collection: 'app.bsky.feed.post', record: post('x') }, { signWith: stranger, apply: false })
    await up.push(bad)
    expect(h.stats.droppedByReason()['bad-signature']).toBe(1)
    expect((h.resolveCalls.get(a.did) ?? 0) - before).toBe(1)
    // A valid commit still flows.
    await up.push(forged)
    expect(h.output().filter((o) => o.t === '#commit')).toHaveLength(2)
  })

  it('accepts a commit signed with a rotated key after refreshing the cached identity', async () => {
    const h = (harness = await createHarness('postgres'))
    const up = new Upstream(h, await h.addHost(HOST_A))
    const a = await account(h, HOST_A)
    await up.push(...(await a.genesis()))
    await a.rotateSigningKey()
    // The resolver now serves the new key; the directory still has the old one cached.
    h.setIdentity(a.did, { key: a.signingKey.did(), pds: `https://${HOST_A}`, handle: a.handle })
    await up.push(await a.createRecord('app.bsky.feed.post', post('new key')))
    expect(h.stats.droppedByReason()['bad-signature']).toBeUndefined()
    expect(h.output().filter((o) => o.t === '#commit')).toHaveLength(2)
  })

  it('drops events for DIDs hosted elsewhere (wrong-host) without creating accounts', async () => {
    const h = (harness = await createHarness('postgres'))
    const upA = new Upstream(h, await h.addHost(HOST_A))
    const upB = new Upstream(h, await h.addHost(HOST_B))
    const a = await account(h, HOST_A)
    const [identity, acct, commit] = await a.genesis()
    // Host B relays A's account: every type is refused, no account appears.
    await upB.push(identity!, acct!, commit!)
    expect(h.stats.snapshot(HOST_B).dropped).toEqual({ 'wrong-host': 3 })
    expect(await h.pipeline.accountStatus(a.did)).toBeNull()
    expect(h.output()).toHaveLength(0)
    // From its own host it is accepted; afterwards B's #identity and #account for the known DID are not
    // (any host could otherwise make the relay emit identity events for any DID).
    await upA.push(identity!, acct!, commit!)
    await upB.push(a.identityEvent(), a.accountEvent(false, 'deactivated'))
    expect(h.output().map((o) => [o.t, o.body.handle])).toEqual([
      ['#identity', a.handle],
      ['#account', undefined],
      ['#commit', undefined],
    ])
    expect(h.stats.snapshot(HOST_B).dropped).toEqual({ 'wrong-host': 5 })
    expect((await h.pipeline.accountStatus(a.did))?.upstreamStatus).toBe('active')
    expect((await hostRow(h, upB.host.id)).account_count).toBe(0)
  })

  it('drops replayed revs as duplicates and future revs', async () => {
    const h = (harness = await createHarness('postgres'))
    const up = new Upstream(h, await h.addHost(HOST_A))
    const a = await account(h, HOST_A)
    await up.push(...(await a.genesis()))
    const c1 = await a.createRecord('app.bsky.feed.post', post('one'))
    await up.push(c1, c1)
    const future = await a.commit({ action: 'create', collection: 'app.bsky.feed.post', record: post('later') }, { rev: tidAtOffset(10 * 60_000), apply: false })
    await up.push(future)
    expect(h.stats.droppedByReason()).toEqual({ duplicate: 2, 'future-rev': 1 })
    expect(h.output().filter((o) => o.t === '#commit')).toHaveLength(2)
  })

  it('strict hosts drop a commit without prevData once a head exists; a lenient host forwards it', async () => {
    const h = (harness = await createHarness('postgres'))
    const upA = new Upstream(h, await h.addHost(HOST_A))
    const upB = new Upstream(h, await h.addHost(HOST_B, { lenient: true }))
    const a = await account(h, HOST_A)
    const b = await account(h, HOST_B)
    await upA.push(...(await a.genesis()))
    await upB.push(...(await b.genesis()))
    await upA.push(await a.createRecord('app.bsky.feed.post', post('a'), undefined).then(async () => a.commit({ action: 'create', collection: 'app.bsky.feed.post', record: post('a2') }, { omitPrevData: true })))
    await upB.push(await b.commit({ action: 'create', collection: 'app.bsky.feed.post', record: post('b') }, { omitPrevData: true }))
    expect(h.stats.snapshot(HOST_A).dropped['missing-prevdata']).toBe(1)
    expect(h.stats.snapshot(HOST_B).dropped['missing-prevdata']).toBeUndefined()
    expect(h.output().filter((o) => o.did === b.did && o.t === '#commit')).toHaveLength(2)
    const tolerated = await h.registry.getSingleMetric('relay_ingest_lenient_tolerated_total')?.get()
    expect(tolerated?.values.find((v) => v.labels.reason === 'missing-prevdata')?.value).toBe(1)
  })

  it('moves an account between hosts, updating both counts', async () => {
    const h = (harness = await createHarness('postgres'))
    const upA = new Upstream(h, await h.addHost(HOST_A))
    const upB = new Upstream(h, await h.addHost(HOST_B))
    const a = await account(h, HOST_A)
    await upA.push(...(await a.genesis()))
    expect((await hostRow(h, upA.host.id)).account_count).toBe(1)
    // Migration: the DID document now names B; B announces it.
    await a.movePds(`https://${HOST_B}`)
    h.setIdentity(a.did, { key: a.signingKey.did(), pds: `https://${HOST_B}`, handle: a.handle })
    await upB.push(a.identityEvent(), a.accountEvent(true), await a.createRecord('app.bsky.feed.post', post('moved')))
    await upA.push(a.accountEvent(false, 'deactivated'))
    const status = await h.pipeline.accountStatus(a.did)
    expect(status?.hostId).toBe(upB.host.id)
    expect(status?.upstreamStatus).toBe('active')
    expect((await hostRow(h, upA.host.id)).account_count).toBe(0)
    expect((await hostRow(h, upB.host.id)).account_count).toBe(1)
    // A's late deactivation was ignored: it is no longer authoritative.
    expect(h.stats.snapshot(HOST_A).dropped).toEqual({ duplicate: 1, 'wrong-host': 1 })
    expect(h.output().slice(-3).map((o) => o.t)).toEqual(['#identity', '#account', '#commit'])
  })

  it.each(['postgres', 'pglite'] as const)('throttles accounts beyond the host limit and releases them in arrival order with #account (%s)', async (kind) => {
    const h = (harness = await createHarness(kind))
    const up = new Upstream(h, await h.addHost(HOST_A, { accountLimit: 2 }))
    const accounts: TestAccount[] = []
    for (let i = 0; i < 4; i++) {
      const a = await account(h, HOST_A)
      accounts.push(a)
      await up.push(...(await a.genesis()))
    }
    const statuses = await Promise.all(accounts.map((a) => h.pipeline.accountStatus(a.did)))
    expect(statuses.map((s) => s?.localStatus)).toEqual(['active', 'active', 'throttled', 'throttled'])
    expect(statuses[2]?.combined).toEqual({ active: false, status: 'throttled' })
    // Their commits are dropped; their upstream #account is re-emitted as throttled.
    expect(h.stats.droppedByReason().throttled).toBe(4) // genesis #commit and #sync of two accounts
    const throttledAccountEvents = h.output().filter((o) => o.t === '#account' && o.did === accounts[2]!.did)
    expect(throttledAccountEvents.map((o) => [o.body.active, o.body.status])).toEqual([[false, 'throttled']])
    expect((await hostRow(h, up.host.id)).account_count).toBe(4)

    await h.db.storage.db.updateTable('host').set({ account_limit: 3 }).where('id', '=', up.host.id).execute()
    expect(await h.pipeline.releaseThrottled(up.host.id)).toEqual([accounts[2]!.did])
    expect(await h.pipeline.releaseThrottled(up.host.id)).toEqual([])
    await h.db.storage.db.updateTable('host').set({ account_limit: 10 }).where('id', '=', up.host.id).execute()
    expect(await h.pipeline.releaseThrottled(up.host.id)).toEqual([accounts[3]!.did])
    const released = h.output().slice(-2)
    expect(released.map((o) => [o.t, o.did, o.body.active, o.body.status])).toEqual([
      ['#account', accounts[2]!.did, true, undefined],
      ['#account', accounts[3]!.did, true, undefined],
    ])
    // Released accounts flow again.
    await up.push(await accounts[3]!.createRecord('app.bsky.feed.post', post('free')))
    expect(h.output().at(-1)).toMatchObject({ t: '#commit', did: accounts[3]!.did })
  }, 180_000)

  it('#account deleted decrements the host count, and a return increments it', async () => {
    const h = (harness = await createHarness('postgres'))
    const up = new Upstream(h, await h.addHost(HOST_A, { accountLimit: 1 }))
    const a = await account(h, HOST_A)
    await up.push(...(await a.genesis()))
    await up.push(a.accountEvent(false, 'deleted'))
    expect((await hostRow(h, up.host.id)).account_count).toBe(0)
    expect(h.output().at(-1)?.body).toMatchObject({ active: false, status: 'deleted' })
    // The deleted account no longer takes the host's only slot.
    const b = await account(h, HOST_A)
    await up.push(...(await b.genesis()))
    expect((await h.pipeline.accountStatus(b.did))?.localStatus).toBe('active')
    await up.push(a.accountEvent(true))
    expect((await hostRow(h, up.host.id)).account_count).toBe(2)
  })

  it('takedown and restore emit #account with the combined status', async () => {
    const h = (harness = await createHarness('postgres'))
    const up = new Upstream(h, await h.addHost(HOST_A))
    const a = await account(h, HOST_A)
    await up.push(...(await a.genesis()))
    const down = await h.pipeline.takedown(a.did)
    expect(down.combined).toEqual({ active: false, status: 'takendown' })
    expect(h.output().at(-1)).toMatchObject({ t: '#account', did: a.did, body: { active: false, status: 'takendown' } })
    // The account's earlier events left the replay log; only the takedown remains.
    const logged = await h.db.storage.db.selectFrom('event').select(['kind']).where('account_id', '=', down.accountId).execute()
    expect(logged.map((r) => r.kind)).toEqual([4])
    // Upstream says active: still reported as taken down; commits dropped.
    await up.push(a.accountEvent(true), await a.createRecord('app.bsky.feed.post', post('hidden')))
    expect(h.output().at(-1)?.body).toMatchObject({ active: false, status: 'takendown' })
    expect(h.stats.droppedByReason().takendown).toBe(1)
    const restored = await h.pipeline.restore(a.did)
    expect(restored.combined).toEqual({ active: true })
    expect(h.output().at(-1)?.body).toMatchObject({ active: true })
    expect(h.output().at(-1)?.body.status).toBeUndefined()
    await up.push(await a.createRecord('app.bsky.feed.post', post('visible')))
    expect(h.output().at(-1)?.t).toBe('#commit')
    await expect(h.pipeline.takedown('did:plc:aaaaaaaaaaaaaaaaaaaaaaaa')).rejects.toMatchObject({ reason: 'unknown-account' })
  })

  it('advances the host cursor past dropped events, in memory and in the database', async () => {
    const h = (harness = await createHarness('postgres'))
    const up = new Upstream(h, await h.addHost(HOST_A))
    const a = await account(h, HOST_A)
    await up.push(...(await a.genesis()))
    await up.push({ t: '#handle', body: { did: a.did, handle: 'x.test', time: new Date().toISOString() } }, { t: '#whatever', body: { did: a.did } })
    expect(h.stats.droppedByReason()).toMatchObject({ 'removed-type': 1, 'unknown-type': 1 })
    expect(up.seq).toBe(6)
    expect(h.sequencer.hostCursor(up.host.id)).toBe(6)
    await waitUntil(async () => (await hostRow(h, up.host.id)).cursor === 6, 'stored cursor 6', 20_000)
  })

  it('after stop, events are not taken and the host cursor stays before them', async () => {
    const h = (harness = await createHarness('postgres'))
    const up = new Upstream(h, await h.addHost(HOST_A))
    const a = await account(h, HOST_A)
    await up.push(...(await a.genesis()))
    expect(h.sequencer.hostCursor(up.host.id)).toBe(4)
    await h.pipeline.stop()
    await up.push(await a.createRecord('app.bsky.feed.post', post('late')), a.accountEvent(true))
    expect(h.sequencer.hostCursor(up.host.id)).toBe(4)
    expect(h.output()).toHaveLength(3)
    expect(h.stats.snapshot(HOST_A).dropped).toEqual({ duplicate: 1 })
  })

  it('keeps the handle only when it verifies both ways', async () => {
    const h = (harness = await createHarness('postgres'))
    const up = new Upstream(h, await h.addHost(HOST_A))
    const a = await account(h, HOST_A)
    await up.push(...(await a.genesis()))
    await up.push(a.identityEvent('someone-else.test'))
    h.handles.delete(a.handle) // the handle no longer resolves back
    await up.push(a.identityEvent())
    expect(h.output().filter((o) => o.t === '#identity').map((o) => o.body.handle)).toEqual([a.handle, undefined, undefined])
  })

  it('re-checks a stale inactive status with getRepoStatus before dropping', async () => {
    let answer: { active: boolean; status?: string } | null = null
    const checks: string[] = []
    const h = (harness = await createHarness('postgres', {
      statusRecheckMs: 0,
      repoStatusCheck: async (host, did) => {
        checks.push(`${host.hostname} ${did}`)
        return answer
      },
    }))
    const up = new Upstream(h, await h.addHost(HOST_A))
    const a = await account(h, HOST_A)
    await up.push(...(await a.genesis()))
    await up.push(a.accountEvent(false, 'deactivated'))
    // The host cannot say: the stored status stands.
    await up.push(await a.createRecord('app.bsky.feed.post', post('one')))
    expect(h.stats.droppedByReason().inactive).toBe(1)
    // The host says active after all (a missed #account): the commit flows and the status is fixed.
    answer = { active: true }
    await up.push(await a.createRecord('app.bsky.feed.post', post('two')))
    expect(checks).toEqual([`${HOST_A} ${a.did}`, `${HOST_A} ${a.did}`])
    expect(h.output().at(-1)?.t).toBe('#commit')
    expect((await h.pipeline.accountStatus(a.did))?.upstreamStatus).toBe('active')
  })
})

describe('ordering and backpressure', () => {
  it('keeps per-DID order while DIDs run concurrently', async () => {
    const h = (harness = await createHarness('postgres', { hostConcurrency: 4, maxInFlight: 8 }))
    const up = new Upstream(h, await h.addHost(HOST_A))
    const accounts = await Promise.all(Array.from({ length: 5 }, () => account(h, HOST_A)))
    for (const a of accounts) await up.push(...(await a.genesis()))
    // Build 6 commits per account, then push them interleaved without waiting in between.
    const perAccount = await Promise.all(
      accounts.map(async (a) => {
        const out: PdsEvent[] = []
        for (let i = 0; i < 6; i++) out.push(await a.createRecord('app.bsky.feed.post', post(`p${i}`)))
        return out
      }),
    )
    const frames: { t: string; body: Record<string, unknown> }[] = []
    for (let i = 0; i < 6; i++) for (const list of perAccount) frames.push(list[i]!)
    const before = h.output().length
    let maxRunning = 0
    for (const f of frames) {
      const seq = ++up.seq
      const wait = h.push(up.host, toFrame(f, seq), seq)
      maxRunning = Math.max(maxRunning, h.pipeline.inFlight)
      if (wait) await wait
    }
    await h.pipeline.idle()
    const commits = h.output().slice(before)
    expect(commits).toHaveLength(30)
    for (const a of accounts) {
      const revs = commits.filter((o) => o.did === a.did).map((o) => o.body.rev as string)
      expect(revs).toEqual([...revs].sort())
      expect(revs).toHaveLength(6)
    }
    expect(h.stats.snapshot(HOST_A).discontinuities).toBe(0)
    expect(maxRunning).toBeGreaterThan(1)
    expect(maxRunning).toBeLessThanOrEqual(4)
  })

  it('applies backpressure through push with a tiny maxInFlight', async () => {
    const h = (harness = await createHarness('postgres', { hostConcurrency: 1, maxInFlight: 1, hostQueueLimit: 3, maxQueued: 3 }))
    const up = new Upstream(h, await h.addHost(HOST_A))
    const a = await account(h, HOST_A)
    await up.push(...(await a.genesis()))
    const commits: PdsEvent[] = []
    for (let i = 0; i < 12; i++) commits.push(await a.createRecord('app.bsky.feed.post', post(`c${i}`)))
    let promises = 0
    let maxPending = 0
    for (const c of commits) {
      const seq = ++up.seq
      const wait = h.push(up.host, toFrame(c, seq), seq)
      maxPending = Math.max(maxPending, h.pipeline.inFlight + h.pipeline.queued)
      if (wait) {
        promises++
        await wait // what the crawler does: stop reading until there is room
      }
    }
    await h.pipeline.idle()
    expect(promises).toBeGreaterThan(0)
    expect(maxPending).toBeLessThanOrEqual(3)
    expect(h.output().filter((o) => o.t === '#commit')).toHaveLength(13)
    expect(h.sequencer.hostCursor(up.host.id)).toBe(up.seq)
  })
})

describe('worker-thread verification', () => {
  it('verifies in workers with the same outcomes as inline', async () => {
    const h = (harness = await createHarness('postgres', { verifyWorkers: 2 }))
    expect(h.pipeline.verifyMode).toBe('workers')
    await h.pipeline.start()
    const up = new Upstream(h, await h.addHost(HOST_A))
    const a = await account(h, HOST_A)
    await up.push(...(await a.genesis()))
    const bad = await a.commit({ action: 'create', collection: 'app.bsky.feed.post', record: post('x') }, { signWith: generateKeypair('p256'), apply: false })
    await up.push(bad, await a.createRecord('app.bsky.feed.post', post('ok')))
    expect(h.stats.droppedByReason()).toEqual({ duplicate: 1, 'bad-signature': 1 })
    expect(h.output().filter((o) => o.t === '#commit')).toHaveLength(2)
  })
})

describe('identity lookups that fail for a while', () => {
  it('retries an event whose DID lookup failed transiently instead of dropping it', async () => {
    const h = (harness = await createHarness('postgres', { transientRetryBaseMs: 50 }))
    const up = new Upstream(h, await h.addHost(HOST_A))
    const a = await TestAccount.create({ pdsUrl: `https://${HOST_A}` })
    // PLC times out at first (a network blip), then answers.
    h.identities.set(a.did, { status: 'failed', did: a.did, error: 'timeout: request timed out' })
    const events = await a.genesis()
    const pushing = up.push(...events)
    // The lookup failed and was asked again: the event is being retried, and nothing went out meanwhile.
    await waitUntil(() => (h.resolveCalls.get(a.did) ?? 0) >= 2, 'a second DID lookup', 20_000)
    expect(h.output()).toEqual([])
    h.setIdentity(a.did, { key: a.signingKey.did(), pds: `https://${HOST_A}`, handle: a.handle })
    await pushing
    expect(h.output().map((o) => o.t)).toEqual(['#identity', '#account', '#commit'])
    expect(h.stats.droppedByReason()).toEqual({ duplicate: 1 }) // only the #sync repeating the head
    expect(h.resolveCalls.get(a.did)).toBeGreaterThanOrEqual(2)
  })

  it('drops at once when the answer is definitive (not found)', async () => {
    const h = (harness = await createHarness('postgres', { transientRetryBaseMs: 50 }))
    const up = new Upstream(h, await h.addHost(HOST_A))
    const a = await TestAccount.create({ pdsUrl: `https://${HOST_A}` })
    const [identity] = await a.genesis()
    await up.push(identity!)
    expect(h.output()).toEqual([])
    expect(h.stats.droppedByReason()).toEqual({ 'no-identity': 1 })
  })

  it('drops as no-identity after the retries when the lookup keeps failing', async () => {
    const h = (harness = await createHarness('postgres', { transientRetryBaseMs: 10, maxAttempts: 3 }))
    const up = new Upstream(h, await h.addHost(HOST_A))
    const a = await TestAccount.create({ pdsUrl: `https://${HOST_A}` })
    h.identities.set(a.did, { status: 'failed', did: a.did, error: 'connection refused' })
    const [identity] = await a.genesis()
    await up.push(identity!)
    expect(h.output()).toEqual([])
    expect(h.stats.droppedByReason()).toEqual({ 'no-identity': 1 })
  })
})
