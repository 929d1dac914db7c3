/**
 * listReposByCollection through the whole relay: real signed commits from a
 * loopback fake PDS, crawled and ingested, the index written with each batch,
 * answered by the API; on Postgres and on PGlite.
 */
import { sql } from 'kysely'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { keyHeight } from '../../src/atproto/mst/index.js'
import type { Relay } from '../../src/relay.js'
import { createPostgresDatabase } from '../helpers/db.js'
import { LoopbackPlc } from '../helpers/loopback-plc.js'
import { FirehoseClient } from '../helpers/firehose-client.js'
import { getJson, startTestRelay } from '../helpers/relay.js'
import type { TestAccount } from '../helpers/repo-builder.js'
import { nextTid } from '../helpers/tid.js'
import { Ledger, startHost, type TestHost } from '../relay/accounts.js'

const THING = 'com.example.thing'
const thing = (n: number) => ({ $type: THING, n })
/** A fresh record key whose MST key in THING sits at a layer `want` accepts. */
function rkeyAt(want: (height: number) => boolean): string {
  for (;;) {
    const rkey = nextTid()
    if (want(keyHeight(`${THING}/${rkey}`))) return rkey
  }
}

for (const kind of ['postgres', 'pglite'] as const) {
  describe(`listReposByCollection (${kind})`, () => {
    const cleanups: (() => Promise<unknown>)[] = []
    let relay: Relay
    let reader: FirehoseClient
    let host: TestHost
    let ledger: Ledger
    let a: TestAccount, b: TestAccount, c: TestAccount

    beforeAll(async () => {
      const plc = await LoopbackPlc.start()
      cleanups.push(() => plc.close())
      let databaseUrl: string | undefined
      if (kind === 'postgres') {
        const db = await createPostgresDatabase()
        cleanups.push(() => db.drop())
        databaseUrl = db.url
      }
      const handles = new Map<string, string>()
      relay = await startTestRelay({ ...(databaseUrl ? { databaseUrl } : {}), plcUrl: plc.url, handles })
      cleanups.push(() => relay.stop())
      reader = await FirehoseClient.connect(relay, 0)
      cleanups.push(() => reader.close())
      ledger = new Ledger()
      host = await startHost(relay, plc, handles, ledger, { accounts: 3 })
      cleanups.push(() => host.pds.close())
      ;[a, b, c] = host.accounts as [TestAccount, TestAccount, TestAccount]
      await ledger.expectAllForwarded(reader)
    })
    afterAll(async () => {
      for (const fn of cleanups.reverse()) await fn().catch(() => undefined)
    })

    const list = async (query: string) => {
      const res = await getJson(relay, `/xrpc/com.atproto.sync.listReposByCollection?${query}`)
      return res
    }
    const dids = async (collection: string) => {
      const res = await list(`collection=${collection}&limit=2000`)
      expect(res.status).toBe(200)
      return (res.body.repos as { did: string }[]).map((r) => r.did).sort()
    }
    const publish = async (...events: Awaited<ReturnType<TestAccount['createRecord']>>[]) => {
      ledger.publish(host.pds, ...events)
      await ledger.expectAllForwarded(reader)
    }

    it('records created in a new collection appear; other collections are unaffected', async () => {
      expect(await dids(THING)).toEqual([])
      // b's only record sits above layer 0: when b's repo is emptied and refilled below, @atproto/repo
      // leaves an untrimmed (pointer-only) root, which the relay must accept (src/atproto/mst/untrimmed-top.ts).
      await publish(await a.createRecord(THING, thing(1)), await a.createRecord(THING, thing(2)), await b.createRecord(THING, thing(3), rkeyAt((h) => h >= 1)))
      await publish(await c.createRecord('app.bsky.feed.post', { $type: 'app.bsky.feed.post', text: 'hi', createdAt: new Date().toISOString() }))
      expect(await dids(THING)).toEqual([a.did, b.did].sort())
      expect(await dids('app.bsky.feed.post')).toEqual([c.did])
      // Repeated collection parameters: the union, each DID once.
      const union = await list(`collection=${THING}&collection=app.bsky.feed.post&collection=${THING}`)
      expect((union.body.repos as { did: string }[]).map((r) => r.did).sort()).toEqual([a.did, b.did, c.did].sort())
    })

    it('deleting the last record of a collection removes the account; another record keeps it', async () => {
      const [aFirst] = a.recordPaths.filter((p) => p.startsWith(`${THING}/`))
      const [bOnly] = b.recordPaths.filter((p) => p.startsWith(`${THING}/`))
      await publish(await a.deleteRecord(aFirst!), await b.deleteRecord(bOnly!))
      expect(await dids(THING)).toEqual([a.did])
      // And back: a new record brings b in again (b's repo was empty; this key is at layer 0).
      expect(b.recordCount).toBe(0)
      await publish(await b.createRecord(THING, thing(4), rkeyAt((h) => h === 0)))
      expect(await dids(THING)).toEqual([a.did, b.did].sort())
    })

    it('pages with an opaque cursor, without repeats or gaps', async () => {
      const first = await list(`collection=${THING}&limit=1`)
      expect(first.status).toBe(200)
      expect(first.body.repos).toHaveLength(1)
      expect(typeof first.body.cursor).toBe('string')
      const second = await list(`collection=${THING}&limit=1&cursor=${String(first.body.cursor)}`)
      expect(second.body.repos).toHaveLength(1)
      // Nothing after it: the last page has no cursor.
      expect(second.body.cursor).toBeUndefined()
      // A cursor past the end is an empty page.
      const past = await list(`collection=${THING}&limit=1&cursor=999999`)
      expect(past.body).toEqual({ repos: [] })
      const seen = [...(first.body.repos as { did: string }[]), ...(second.body.repos as { did: string }[])].map((r) => r.did).sort()
      expect(seen).toEqual([a.did, b.did].sort())
    })

    it('deactivation and takedown hide the account without deleting its pair; reactivation and restore show it again', async () => {
      ledger.publish(host.pds, a.accountEvent(false, 'deactivated'))
      await ledger.expectAllForwarded(reader)
      expect(await dids(THING)).toEqual([b.did])
      ledger.publish(host.pds, a.accountEvent(true))
      await ledger.expectAllForwarded(reader)
      expect(await dids(THING)).toEqual([a.did, b.did].sort())

      await relay.admin.takedown(b.did)
      expect(await dids(THING)).toEqual([a.did])
      await relay.admin.restore(b.did)
      expect(await dids(THING)).toEqual([a.did, b.did].sort())
    })

    it('account deletion removes its pairs', async () => {
      const before = await sql<{ n: number }>`select count(*)::int as n from repo_collection r join account x on x.id = r.account_id where x.did = ${c.did}`.execute(relay.storage.db)
      expect(before.rows[0]!.n).toBe(1)
      // (The ledger does not know the relay's own #account events of the takedown above: wait on the output instead.)
      ledger.publish(host.pds, c.accountEvent(false, 'deleted'))
      await reader.waitFor((events) => events.some((o) => o.did === c.did && o.t === '#account' && o.body.status === 'deleted'), `${c.did} deleted`)
      const after = await sql<{ n: number }>`select count(*)::int as n from repo_collection r join account x on x.id = r.account_id where x.did = ${c.did}`.execute(relay.storage.db)
      expect(after.rows[0]!.n).toBe(0)
      expect(await dids('app.bsky.feed.post')).toEqual([])
    })

    it('bad collection, bad cursor and a limit out of range are 400 InvalidRequest', async () => {
      for (const query of ['', 'collection=not-an-nsid', 'collection=com.example', `collection=${THING}&cursor=abc`, `collection=${THING}&cursor=-1`, `collection=${THING}&limit=0`, `collection=${THING}&limit=2001`, `collection=${THING}&limit=x`]) {
        const res = await list(query)
        expect(res.status, query).toBe(400)
        expect(res.body.error, query).toBe('InvalidRequest')
        expect(typeof res.body.message, query).toBe('string')
      }
      const many = Array.from({ length: 11 }, (_, i) => `collection=com.example.c${i}`).join('&')
      expect((await list(many)).status).toBe(400)
      expect((await list(`collection=${THING}&limit=2000`)).status).toBe(200)
    })
  })
}
