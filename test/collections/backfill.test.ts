/**
 * The describeRepo backfill through the whole relay: an index left empty for
 * accounts the relay knew before it existed is filled from a loopback fake
 * PDS; the pass resumes after a restart without asking again; a #sync queues
 * its account to be read again (adding and, with the head unchanged, removing);
 * a failure is queued for a retry and counted; progress shows in metrics and
 * the admin API.
 */
import pg from 'pg'
import { afterAll, describe, expect, it } from 'vitest'
import type { Relay } from '../../src/relay.js'
import { createPostgresDatabase } from '../helpers/db.js'
import { LoopbackPlc } from '../helpers/loopback-plc.js'
import { FirehoseClient } from '../helpers/firehose-client.js'
import { getJson, startTestRelay, TEST_ADMIN_PASSWORD } from '../helpers/relay.js'
import { waitUntil } from '../helpers/wait.js'
import type { TestAccount } from '../helpers/repo-builder.js'
import { Ledger, startHost } from '../relay/accounts.js'

const cleanups: (() => Promise<unknown>)[] = []
afterAll(async () => {
  for (const fn of cleanups.reverse()) await fn().catch(() => undefined)
})

async function query<T extends pg.QueryResultRow>(url: string, text: string, values: unknown[] = []): Promise<T[]> {
  const client = new pg.Client({ connectionString: url })
  await client.connect()
  try {
    return (await client.query<T>(text, values)).rows
  } finally {
    await client.end()
  }
}

const listed = async (relay: Relay, collection: string) => {
  const res = await getJson(relay, `/xrpc/com.atproto.sync.listReposByCollection?collection=${collection}&limit=2000`)
  expect(res.status).toBe(200)
  return (res.body.repos as { did: string }[]).map((r) => r.did).sort()
}

const metric = async (relay: Relay, name: string): Promise<string> => {
  const text = await (await fetch(`http://127.0.0.1:${relay.metricsAddress.port}/metrics`)).text()
  return text
    .split('\n')
    .filter((l) => l.startsWith(name))
    .join('\n')
}

describe('collections backfill from describeRepo', () => {
  it('fills an empty index for pre-existing accounts, resumes after a restart, re-reads after #sync, retries failures', async () => {
    const db = await createPostgresDatabase()
    cleanups.push(() => db.drop())
    const plc = await LoopbackPlc.start()
    cleanups.push(() => plc.close())
    const handles = new Map<string, string>()
    const ledger = new Ledger()

    // 1. A relay without the backfill ingests three accounts' records.
    let relay = await startTestRelay({ databaseUrl: db.url, plcUrl: plc.url, handles })
    const reader = await FirehoseClient.connect(relay, 0)
    const host = await startHost(relay, plc, handles, ledger, { accounts: 3 })
    cleanups.push(() => host.pds.close())
    const [a, b, c] = host.accounts as [TestAccount, TestAccount, TestAccount]
    ledger.publish(host.pds, await a.createRecord('com.example.thing', { n: 1 }), await b.createRecord('com.example.thing', { n: 2 }))
    ledger.publish(host.pds, await b.createRecord('com.example.other', { n: 3 }), await c.createRecord('com.example.other', { n: 4 }))
    await ledger.expectAllForwarded(reader)
    expect(await listed(relay, 'com.example.thing')).toEqual([a.did, b.did].sort())
    await reader.close()
    await relay.stop()

    // 2. As if these accounts predated the index (migrate:2 applied to a relay that already knew them).
    await query(db.url, 'truncate repo_collection')
    // c is deactivated at its PDS: describeRepo refuses it, so it must be retried later.
    const cState = host.pds.getRepoState(c.did)!
    host.pds.setRepoState({ ...cState, active: false, status: 'deactivated' })

    const env = { RELAY_COLLECTIONS_BACKFILL: 'true', RELAY_COLLECTIONS_BACKFILL_RATE: '50' }
    relay = await startTestRelay({ databaseUrl: db.url, plcUrl: plc.url, handles, env, overrides: { collectionsBackfillIdleMs: 50 } })
    cleanups.push(() => relay.stop())
    const maxId = Number((await query<{ max: string }>(db.url, 'select max(id) as max from account'))[0]!.max)
    await waitUntil(() => relay.collectionsBackfill!.status().walkPosition === maxId, 'the first pass to reach the last account', 30_000)
    expect(await listed(relay, 'com.example.thing')).toEqual([a.did, b.did].sort())
    expect(await listed(relay, 'com.example.other')).toEqual([b.did])
    const queued = await query<{ account_id: string; reason: string; attempts: number; last_error: string }>(db.url, 'select account_id, reason, attempts, last_error from collection_backfill')
    expect(queued).toHaveLength(1)
    expect(queued[0]).toMatchObject({ reason: 'retry', attempts: 1 })
    expect(queued[0]!.last_error).toMatch(/HTTP 400 RepoDeactivated/)
    expect(await metric(relay, 'relay_collections_backfill_requests_total')).toMatch(/outcome="ok"} 2\b/)
    expect(await metric(relay, 'relay_collections_backfill_requests_total')).toMatch(/outcome="status"} 1\b/)
    expect(await metric(relay, 'relay_collections_backfill_position')).toMatch(new RegExp(`of="walk"} ${maxId}\\b`))

    // Progress in the admin API (the admin page's settings tab shows the same).
    const admin = await fetch(`http://127.0.0.1:${relay.apiAddress.port}/admin/api/collections`, {
      headers: { authorization: `Basic ${Buffer.from(`admin:${TEST_ADMIN_PASSWORD}`).toString('base64')}` },
    })
    expect(admin.status).toBe(200)
    expect(await admin.json()).toMatchObject({ backfill: { running: true, walkPosition: maxId, maxAccountId: maxId, queued: 1, filled: 2, failed: 1 } })

    // 3. A restart resumes from the stored position: the accounts already read are not asked again.
    const callsBefore = host.pds.stats.describeRepoCalls
    await relay.stop()
    relay = await startTestRelay({ databaseUrl: db.url, plcUrl: plc.url, handles, env, overrides: { collectionsBackfillIdleMs: 50 } })
    cleanups.push(() => relay.stop())
    await waitUntil(() => relay.collectionsBackfill!.status().maxAccountId === maxId, 'a backfill round after the restart', 30_000)
    expect(relay.collectionsBackfill!.status().walkPosition).toBe(maxId)
    expect(host.pds.stats.describeRepoCalls).toBe(callsBefore)

    // 4. #sync: the repo may have changed in any way, so its collections are read again.
    const reader2 = await FirehoseClient.connect(relay, 0)
    cleanups.push(() => reader2.close())
    await waitUntil(() => host.pds.openConnections === 1, 'the relay to resubscribe')
    // a's repo moves on without the relay seeing the commit: a new collection, and com.example.thing gone.
    const unseen = await a.createRecord('com.example.synced', { n: 5 })
    const aState = host.pds.getRepoState(a.did)!
    aState.records = new Set([unseen.meta.ops[0]!.path])
    const sync = await a.syncEvent()
    host.pds.publish(sync)
    await reader2.waitFor((events) => events.some((o) => o.did === a.did && o.t === '#sync'), `${a.did} #sync forwarded`)
    await waitUntil(async () => (await listed(relay, 'com.example.synced')).includes(a.did), 'the #sync re-read to add com.example.synced', 30_000)
    // The head did not move between the read and the write, so the collection the repo no longer has is gone too.
    await waitUntil(async () => !(await listed(relay, 'com.example.thing')).includes(a.did), 'the #sync re-read to remove com.example.thing', 30_000)
    expect(await listed(relay, 'com.example.thing')).toEqual([b.did])

    // 5. A discontinuous commit (the relay missed the one before it, which made a new collection)
    // queues the same re-read: the missed commit's collection appears.
    const missed = await b.createRecord('com.example.gap', { n: 6 })
    const bState = host.pds.getRepoState(b.did)!
    ;(bState.records ??= new Set()).add(missed.meta.ops[0]!.path)
    host.pds.publish(await b.createRecord('com.example.thing', { n: 7 }))
    await waitUntil(async () => (await listed(relay, 'com.example.gap')).includes(b.did), 'the re-read after the discontinuous commit to add com.example.gap', 30_000)
    expect(await listed(relay, 'com.example.thing')).toEqual([b.did])

    // 6. An answer older than a commit that landed while it was being asked is not applied (it would
    // re-add the collection that commit emptied): the account is read again instead.
    let release!: () => void
    const held = new Promise<void>((resolve) => (release = resolve))
    let asked = false
    host.pds.beforeDescribeRepoAnswer = async (did) => {
      if (did !== b.did || asked) return
      asked = true
      await held
    }
    const bId = Number((await query<{ id: string }>(db.url, 'select id from account where did = $1', [b.did]))[0]!.id)
    await query(db.url, "insert into collection_backfill (account_id, reason) values ($1, 'sync') on conflict (account_id) do update set due_at = now()", [bId])
    await waitUntil(() => asked, 'the backfill to ask for b')
    host.pds.publish(await b.deleteRecord(missed.meta.ops[0]!.path)) // b's only com.example.gap record
    await waitUntil(async () => !(await listed(relay, 'com.example.gap')).includes(b.did), 'the delete to empty com.example.gap', 30_000)
    const staleBefore = relay.collectionsBackfill!.status().stale
    release()
    await waitUntil(() => relay.collectionsBackfill!.status().stale === staleBefore + 1, 'the held answer to be found stale')
    await waitUntil(async () => (await query(db.url, 'select 1 from collection_backfill where account_id = $1', [bId])).length === 0, 'the re-read of b', 30_000)
    expect(await listed(relay, 'com.example.gap')).toEqual([])
    expect(await listed(relay, 'com.example.thing')).toEqual([b.did])
  })
})
