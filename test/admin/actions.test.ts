/**
 * Every admin action, end to end: a relay on a fresh Postgres database crawls
 * fake PDS hosts whose accounts are real signed repos with DIDs in a loopback
 * PLC; each action's effect is checked on the firehose, the sync query API and
 * the admin API itself.
 */
import { sql } from 'kysely'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { Relay } from '../../src/relay.js'
import type { FakePds } from '../helpers/fake-pds.js'
import type { TestAccount } from '../helpers/repo-builder.js'
import { addHost, admin, call, hostView, publishGenesis, replay, stopRelay, World } from './harness.js'
import { FirehoseClient } from '../helpers/firehose-client.js'
import { waitFor } from '../helpers/wait.js'
import { startTestRelay } from '../helpers/relay.js'

let world: World
let relay: Relay
let live: FirehoseClient

beforeAll(async () => {
  world = await World.start()
  relay = await startTestRelay(world.relayOptions())
  live = new FirehoseClient(relay, { userAgent: 'ops-dashboard/2.1' })
  await live.opened
}, 30_000)

afterAll(async () => {
  await stopRelay(relay)
  await world?.close()
}, 30_000)

const requestCrawl = (hostname: string) => call(relay, '/xrpc/com.atproto.sync.requestCrawl', { body: { hostname }, auth: null })
const repoStatus = (did: string) => call(relay, `/xrpc/com.atproto.sync.getRepoStatus?did=${encodeURIComponent(did)}`, { auth: null })
const latestCommit = (did: string) => call(relay, `/xrpc/com.atproto.sync.getLatestCommit?did=${encodeURIComponent(did)}`, { auth: null })

/** Publishes a commit and waits until the relay forwarded it. */
async function commitAndSee(pds: FakePds, account: TestAccount, text: string): Promise<void> {
  const event = await account.createRecord('app.bsky.feed.post', { $type: 'app.bsky.feed.post', text, createdAt: new Date().toISOString() })
  pds.publish(event)
  await waitFor(`commit ${event.meta.rev} on the firehose`, () => live.events.some((e) => e.t === '#commit' && e.body.rev === event.meta.rev))
}

describe('hosts', () => {
  let pds: FakePds
  let accounts: TestAccount[]

  beforeAll(async () => {
    pds = await world.host()
    accounts = await world.accounts(pds, 1)
    await addHost(relay, pds)
    await publishGenesis(pds, accounts)
    await commitAndSee(pds, accounts[0]!, 'hello')
  }, 30_000)

  it('lists the host with its status, connection and event counts', async () => {
    const view = await hostView(relay, pds.hostname)
    expect(view).toMatchObject({ hostname: pds.hostname, status: 'active', connected: true, accountCount: 1 })
    expect(view!.events.accepted).toBeGreaterThanOrEqual(4)
    expect(view!.cursor).toBeGreaterThan(0)
  })

  it('block: connection closed, status banned, requestCrawl refused, events stop', async () => {
    await admin(relay, 'hosts/block', { hostname: pds.hostname })
    await waitFor('fake host to see the relay disconnect', () => pds.openConnections === 0)
    expect(await hostView(relay, pds.hostname)).toMatchObject({ status: 'banned', connected: false })
    const status = await call(relay, `/xrpc/com.atproto.sync.getHostStatus?hostname=${pds.hostname}`, { auth: null })
    expect(status.body).toMatchObject({ hostname: pds.hostname, status: 'banned' })

    const crawl = await requestCrawl(pds.hostname)
    expect(crawl.status).toBe(400)
    expect(crawl.body.error).toBe('HostBanned')

    const before = live.events.length
    const connections = pds.stats.connections
    const event = await accounts[0]!.createRecord('app.bsky.feed.post', { $type: 'app.bsky.feed.post', text: 'while blocked', createdAt: new Date().toISOString() })
    pds.publish(event)
    // No path for it: the relay holds no connection for the host (so no redial is scheduled) and none is open.
    expect(relay.crawler.connection(pds.hostname)).toBeUndefined()
    expect(pds.openConnections).toBe(0)
    expect(pds.stats.connections).toBe(connections)
    expect(live.events.length).toBe(before)
    // (The next test sees this post arrive only after unblocking.)
  })

  it('unblock: the relay reconnects from its cursor and picks up what it missed', async () => {
    await admin(relay, 'hosts/unblock', { hostname: pds.hostname })
    await waitFor('reconnect', () => pds.openConnections === 1)
    await waitFor('the post made while blocked', () => live.events.some((e) => e.t === '#commit' && e.body.rev === accounts[0]!.rev))
    expect(await hostView(relay, pds.hostname)).toMatchObject({ status: 'active', connected: true })
    // The reconnect asked for the stored cursor, not a live-only subscription.
    expect(pds.stats.cursors.at(-1)).toBeGreaterThan(0)
  })

  it('unknown hosts and bad input are clear errors', async () => {
    const unknown = await call(relay, '/admin/api/hosts/block', { body: { hostname: 'nowhere.example.com' } })
    expect(unknown.status).toBe(404)
    expect(unknown.body).toMatchObject({ error: 'HostNotFound' })
    const missing = await call(relay, '/admin/api/hosts/limit', { body: { hostname: pds.hostname, accountLimit: -1 } })
    expect(missing.status).toBe(400)
    const lenient = await call(relay, '/admin/api/hosts/lenient', { body: { hostname: pds.hostname, lenient: 'yes' } })
    expect(lenient.status).toBe(400)
  })

  it('a host write that fails or changes no row answers an error, and the host stays as it was, in the database and in memory', async () => {
    const db = relay.storage.db
    // Real Postgres refuses the writes: a block of this host or limit 4242 raise, limit 4343 is silently skipped (no row changed).
    await sql`CREATE FUNCTION refuse_host_write() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        IF NEW.status = 'banned' OR NEW.account_limit = 4242 THEN RAISE EXCEPTION 'host write refused by the test'; END IF;
        IF NEW.account_limit = 4343 THEN RETURN NULL; END IF;
        RETURN NEW;
      END $$`.execute(db)
    await sql`CREATE TRIGGER refuse_host_write BEFORE UPDATE ON host FOR EACH ROW WHEN (OLD.hostname = ${sql.lit(pds.hostname)}) EXECUTE FUNCTION refuse_host_write()`.execute(db)
    const limitsOf = () => {
      const { perSecond, perHour, perDay } = relay.crawler.connection(pds.hostname)!.rateLimits
      return { perSecond, perHour, perDay }
    }
    try {
      const limitBefore = (await hostView(relay, pds.hostname))!.accountLimit
      const limitsBefore = limitsOf()
      const skipped = await call(relay, '/admin/api/hosts/limit', { body: { hostname: pds.hostname, accountLimit: 4343 } })
      expect(skipped.status).toBe(404)
      expect(skipped.body).toMatchObject({ error: 'HostNotFound' })
      const refused = await call(relay, '/admin/api/hosts/limit', { body: { hostname: pds.hostname, accountLimit: 4242 } })
      expect(refused.status).toBe(500)
      expect(refused.body).toMatchObject({ error: 'HostWriteFailed' })
      expect((await hostView(relay, pds.hostname))!.accountLimit).toBe(limitBefore)
      // The live connection's rate limits follow the limit: they did not move either.
      expect(limitsOf()).toEqual(limitsBefore)

      const failed = await call(relay, '/admin/api/hosts/block', { body: { hostname: pds.hostname } })
      expect(failed.status).toBe(500)
      expect(failed.body).toMatchObject({ error: 'HostWriteFailed' })
      expect(String(failed.body.message)).toContain('not stored')
      // Not stored, so not blocked: stored status, in-memory status and the connection are as before.
      expect((await hostView(relay, pds.hostname))!.status).toBe('active')
      expect(relay.crawler.connection(pds.hostname)?.status).toBe('active')
      await waitFor('the connection back after the failed block', () => pds.openConnections === 1 && relay.crawler.connection(pds.hostname)?.state === 'open')
      expect(await hostView(relay, pds.hostname)).toMatchObject({ status: 'active', connected: true })
    } finally {
      await sql`DROP TRIGGER refuse_host_write ON host`.execute(db)
      await sql`DROP FUNCTION refuse_host_write()`.execute(db)
    }
    // Events still flow through the connection the failed block gave back.
    await commitAndSee(pds, accounts[0]!, 'after the failed block')
  })

  it('add host bypasses the new-hosts-per-day limit that public requestCrawl obeys', async () => {
    await admin(relay, 'settings', { newHostsPerDay: 0 })
    const other = await world.host()
    const refused = await requestCrawl(other.hostname)
    expect(refused.status).toBe(429)
    expect(refused.body.error).toBe('RateLimitExceeded')
    expect(await hostView(relay, other.hostname)).toBeUndefined()

    await addHost(relay, other)
    expect(await hostView(relay, other.hostname)).toMatchObject({ status: 'active', connected: true })
    await admin(relay, 'settings', { newHostsPerDay: 50 })
  })

  it('lenient toggle: a commit without prevData is dropped strict, forwarded lenient', async () => {
    const account = accounts[0]!
    const dropsBefore = Object.values((await hostView(relay, pds.hostname))!.events.dropped).reduce((a, b) => a + b, 0)
    const strict = await account.commit({ action: 'create', collection: 'app.bsky.feed.post', record: { text: 'strict', createdAt: new Date().toISOString() } }, { omitPrevData: true })
    pds.publish(strict)
    await waitFor('the strict drop', async () => {
      const v = await hostView(relay, pds.hostname)
      return Object.values(v!.events.dropped).reduce((a, b) => a + b, 0) > dropsBefore
    })
    expect(live.events.some((e) => e.body.rev === strict.meta.rev)).toBe(false)

    await admin(relay, 'hosts/lenient', { hostname: pds.hostname, lenient: true })
    expect((await hostView(relay, pds.hostname))!.lenient).toBe(true)
    const tolerated = await account.commit({ action: 'create', collection: 'app.bsky.feed.post', record: { text: 'lenient', createdAt: new Date().toISOString() } }, { omitPrevData: true })
    pds.publish(tolerated)
    await waitFor('the lenient commit on the firehose', () => live.events.some((e) => e.body.rev === tolerated.meta.rev))

    await admin(relay, 'hosts/lenient', { hostname: pds.hostname, lenient: null })
    expect((await hostView(relay, pds.hostname))!.lenient).toBeNull()
  })
})

describe('account limit', () => {
  it('raising the limit releases throttled accounts in arrival order, each with #account on the firehose', async () => {
    const pds = await world.host()
    await addHost(relay, pds)
    await admin(relay, 'hosts/limit', { hostname: pds.hostname, accountLimit: 1 })
    const accounts = await world.accounts(pds, 3)
    // One at a time, so arrival order is the order of this list.
    for (const a of accounts) {
      await publishGenesis(pds, [a])
      await waitFor(`relay knows ${a.did}`, async () => (await call(relay, `/admin/api/accounts?did=${encodeURIComponent(a.did)}`)).status === 200)
    }
    await waitFor('two throttled accounts', async () => (await hostView(relay, pds.hostname))?.throttledAccounts === 2)
    await waitFor('the first account’s genesis commit', () => live.of(accounts[0]!.did, '#commit').length === 1)
    for (const a of accounts.slice(1)) expect(live.of(a.did, '#commit')).toHaveLength(0)
    const throttled = await admin<{ active: boolean; status?: string; localStatus: string }>(relay, `accounts?did=${encodeURIComponent(accounts[1]!.did)}`)
    expect(throttled).toMatchObject({ localStatus: 'throttled', active: false, status: 'throttled' })

    await admin(relay, 'hosts/limit', { hostname: pds.hostname, accountLimit: 3 })
    const released = await waitFor('#account for both released accounts', () => {
      const events = accounts.slice(1).map((a) => live.of(a.did, '#account').find((e) => e.body.active === true))
      return events.every(Boolean) ? (events as NonNullable<(typeof events)[number]>[]) : undefined
    })
    // Arrival order: the account created first is released first.
    expect(released[0]!.seq).toBeLessThan(released[1]!.seq)
    expect(await hostView(relay, pds.hostname)).toMatchObject({ accountLimit: 3, throttledAccounts: 0 })

    // Released accounts flow: a new commit from the last one reaches consumers.
    const event = await accounts[2]!.createRecord('app.bsky.feed.post', { text: 'released', createdAt: new Date().toISOString() })
    pds.publish(event)
    await waitFor('commit from a released account', () => live.events.some((e) => e.body.rev === event.meta.rev))
  })
})

describe('domain bans', () => {
  it('a ban blocks existing hosts under the domain and refuses new ones; unban lifts the refusal', async () => {
    // Hosts under a real DNS name cannot be served on loopback (they are dialled on 443), so they are known rows here.
    await relay.storage.db
      .insertInto('host')
      .values([
        { hostname: 'pds.spam.test', ssl: true, account_limit: 100, lenient: null, last_error: null, last_error_at: null },
        { hostname: 'deep.pds.spam.test', ssl: true, account_limit: 100, lenient: null, last_error: null, last_error_at: null },
        { hostname: 'pds.fine.test', ssl: true, account_limit: 100, lenient: null, last_error: null, last_error_at: null },
      ])
      .execute()

    await admin(relay, 'domains/ban', { domain: 'SPAM.test' })
    expect((await admin<{ domains: { domain: string }[] }>(relay, 'domains')).domains.map((d) => d.domain)).toEqual(['spam.test'])
    expect((await hostView(relay, 'pds.spam.test'))!.status).toBe('banned')
    expect((await hostView(relay, 'deep.pds.spam.test'))!.status).toBe('banned')
    expect((await hostView(relay, 'pds.fine.test'))!.status).not.toBe('banned')

    const refused = await requestCrawl('new.spam.test')
    expect(refused.status).toBe(400)
    expect(refused.body.error).toBe('HostBanned')
    expect(refused.body.message).toContain('spam.test')
    const adminAdd = await call(relay, '/admin/api/hosts', { body: { hostname: 'other.spam.test' } })
    expect(adminAdd.body.error).toBe('HostBanned')

    await admin(relay, 'domains/unban', { domain: 'spam.test' })
    expect((await admin<{ domains: unknown[] }>(relay, 'domains')).domains).toEqual([])
    // No longer refused by the ban (the name just does not resolve here).
    const after = await requestCrawl('new.spam.test')
    expect(after.body.error).not.toBe('HostBanned')
    // Hosts blocked by the ban stay blocked until unblocked one by one.
    expect((await hostView(relay, 'pds.spam.test'))!.status).toBe('banned')

    const again = await call(relay, '/admin/api/domains/unban', { body: { domain: 'spam.test' } })
    expect(again.status).toBe(404)
    const bad = await call(relay, '/admin/api/domains/ban', { body: { domain: 'not a domain' } })
    expect(bad.status).toBe(400)
  })
})

describe('takedowns', () => {
  let pds: FakePds
  let target: TestAccount
  let bystander: TestAccount

  beforeAll(async () => {
    pds = await world.host()
    const [a, b] = await world.accounts(pds, 2)
    target = a!
    bystander = b!
    await addHost(relay, pds)
    await publishGenesis(pds, [target, bystander])
    await commitAndSee(pds, target, 'before takedown')
    await commitAndSee(pds, bystander, 'bystander')
  }, 30_000)

  it('takedown: #account takendown, queries reflect it, replay from 0 loses the account’s events', async () => {
    expect((await replay(relay)).some((e) => e.did === target.did && e.t === '#commit')).toBe(true)
    await admin(relay, 'accounts/takedown', { did: target.did })

    const account = await waitFor('#account takendown', () => live.of(target.did, '#account').find((e) => e.body.status === 'takendown'))
    expect(account.body.active).toBe(false)
    expect((await repoStatus(target.did)).body).toMatchObject({ did: target.did, active: false, status: 'takendown' })
    const latest = await latestCommit(target.did)
    expect(latest.status).toBe(403)
    expect(latest.body.error).toBe('RepoTakendown')
    expect((await admin<{ dids: string[] }>(relay, 'takedowns')).dids).toContain(target.did)
    expect(await admin(relay, `accounts?did=${encodeURIComponent(target.did)}`)).toMatchObject({ localStatus: 'takendown', active: false })

    const replayed = await replay(relay)
    const targets = replayed.filter((e) => e.did === target.did)
    // Only the takedown notice itself remains.
    expect(targets.map((e) => e.t)).toEqual(['#account'])
    expect(replayed.some((e) => e.did === bystander.did && e.t === '#commit')).toBe(true)

    // New commits from the account are dropped.
    const event = await target.createRecord('app.bsky.feed.post', { text: 'after takedown', createdAt: new Date().toISOString() })
    pds.publish(event)
    await waitFor('takendown drop', async () => ((await hostView(relay, pds.hostname))!.events.dropped.takendown ?? 0) >= 1)
    expect(live.events.some((e) => e.body.rev === event.meta.rev)).toBe(false)
  })

  it('restore: #account active again and commits flow', async () => {
    const before = live.of(target.did, '#account').length
    await admin(relay, 'accounts/restore', { did: target.did })
    const restored = await waitFor('#account active', () => live.of(target.did, '#account').slice(before).find((e) => e.body.active === true))
    expect(restored.body.status).toBeUndefined()
    expect((await repoStatus(target.did)).body).toMatchObject({ active: true })
    expect((await admin<{ dids: string[] }>(relay, 'takedowns')).dids).not.toContain(target.did)
    await commitAndSee(pds, target, 'restored')
    expect((await latestCommit(target.did)).body).toMatchObject({ rev: target.rev })
  })

  it('com.atproto.admin.updateSubjectStatus takes down and reverses; getSubjectStatus reports it', async () => {
    const subject = { $type: 'com.atproto.admin.defs#repoRef', did: bystander.did }
    const down = await call(relay, '/xrpc/com.atproto.admin.updateSubjectStatus', { body: { subject, takedown: { applied: true, ref: 'case-17' } } })
    expect(down.status).toBe(200)
    expect(down.body).toEqual({ subject, takedown: { applied: true } })
    await waitFor('#account takendown', () => live.of(bystander.did, '#account').some((e) => e.body.status === 'takendown'))
    const status = await call(relay, `/xrpc/com.atproto.admin.getSubjectStatus?did=${encodeURIComponent(bystander.did)}`)
    expect(status.body).toEqual({ subject, takedown: { applied: true } })
    expect((await repoStatus(bystander.did)).body).toMatchObject({ active: false, status: 'takendown' })

    const before = live.of(bystander.did, '#account').length
    const up = await call(relay, '/xrpc/com.atproto.admin.updateSubjectStatus', { body: { subject, takedown: { applied: false } } })
    expect(up.body).toEqual({ subject, takedown: { applied: false } })
    await waitFor('#account active', () => live.of(bystander.did, '#account').slice(before).some((e) => e.body.active === true))
    expect((await repoStatus(bystander.did)).body).toMatchObject({ active: true })

    const unknown = await call(relay, '/xrpc/com.atproto.admin.updateSubjectStatus', {
      body: { subject: { $type: 'com.atproto.admin.defs#repoRef', did: 'did:plc:aaaaaaaaaaaaaaaaaaaaaaaa' }, takedown: { applied: true } },
    })
    expect(unknown.status).toBe(404)
    const notRepo = await call(relay, '/xrpc/com.atproto.admin.updateSubjectStatus', {
      body: { subject: { $type: 'com.atproto.repo.strongRef', uri: 'at://x/y/z', cid: 'bafy' }, takedown: { applied: true } },
    })
    expect(notRepo.status).toBe(400)
  })

  it('unknown and malformed DIDs are clear errors', async () => {
    const unknown = await call(relay, '/admin/api/accounts/takedown', { body: { did: 'did:plc:aaaaaaaaaaaaaaaaaaaaaaaa' } })
    expect(unknown.status).toBe(404)
    expect(unknown.body.error).toBe('RepoNotFound')
    const bad = await call(relay, '/admin/api/accounts?did=not-a-did')
    expect(bad.status).toBe(400)
  })
})

describe('consumers', () => {
  it('lists the connected WebSocket consumer with its user agent and progress', async () => {
    const { consumers } = await admin<{ consumers: { userAgent: string; remoteAddress: string; eventsSent: number; connectedAt: string }[] }>(relay, 'consumers')
    const mine = consumers.find((c) => c.userAgent === 'ops-dashboard/2.1')
    expect(mine).toBeDefined()
    expect(mine!.remoteAddress).toMatch(/127\.0\.0\.1/)
    expect(mine!.eventsSent).toBe(live.events.length)
    expect(Date.parse(mine!.connectedAt)).not.toBeNaN()
  })
})
