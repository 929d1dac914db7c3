/**
 * Queries that must not grow with accounts: checked on the plans of the SQL the code really runs
 * (test/helpers/query-plans.ts) over a seeded host of 30,000 accounts, by the rows each plan reads.
 * At 10 M accounts the same queries took seconds before (docs/operations.md, "Many hosts and accounts").
 */
import { sql } from 'kysely'
import { Registry } from 'prom-client'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { AdminAccounts } from '../../src/admin/accounts.js'
import { AdminHosts } from '../../src/admin/hosts.js'
import { HttpServer } from '../../src/api/http-server.js'
import { registerSyncQueries } from '../../src/api/sync-queries.js'
import { AccountStore } from '../../src/ingest/index.js'
import { createLogger } from '../../src/logger.js'
import { HostStats } from '../../src/stats/host-stats.js'
import { createTestDatabase, type TestDatabase } from '../helpers/db.js'
import { capturePlans, indexesUsed, rowsRead, type CapturedStorage, type QueryPlan } from '../helpers/query-plans.js'

const BIG = 30_000
const SMALL = 1_000

describe('query plans at scale (30,000 accounts on one host)', () => {
  let t: TestDatabase
  let q: CapturedStorage
  let http: HttpServer
  let base: string
  const stats = new HostStats(new Registry())

  beforeAll(async () => {
    t = await createTestDatabase('postgres')
    // Server-side, like a real relay's tables: accounts of two hosts interleaved in id order, a few throttled,
    // taken down or deleted upstream, a head for all but one in twenty.
    await sql`insert into host (id, hostname, account_limit) values (1, 'big.test', 1000000), (2, 'small.test', 2000)`.execute(t.storage.db)
    await sql`
      insert into account (did, host_id, local_status, upstream_status)
      select 'did:plc:' || lpad(n::text, 24, 'a'), case when n % 31 = 0 and n <= ${SMALL * 31} then 2 else 1 end,
             case when n % 997 = 0 then 'throttled' when n % 1009 = 5 then 'takendown' else 'active' end,
             case when n % 211 = 7 then 'deleted' else 'active' end
      from generate_series(1, ${BIG + SMALL}) n order by n`.execute(t.storage.db)
    await sql`
      insert into account_head (account_id, rev, commit_cid, data_cid)
      select id, '3l' || lpad(to_hex(id), 11, '0'), '\\x01711220'::bytea || sha256(id::text::bytea), '\\x01711220'::bytea || sha256((-id)::text::bytea)
      from account where id % 20 <> 0`.execute(t.storage.db)
    await sql`update host set account_count = (select count(*) from account where host_id = host.id and upstream_status <> 'deleted')`.execute(t.storage.db)
    await sql`analyze`.execute(t.storage.db)
    q = capturePlans(t.storage)
    http = new HttpServer(createLogger('silent'))
    registerSyncQueries(http, { storage: q.storage, stats })
    const addr = await http.listen({ host: '127.0.0.1', port: 0 })
    base = `http://127.0.0.1:${addr.port}/xrpc/`
  }, 60_000)

  afterAll(async () => {
    await http?.close()
    await t?.cleanup()
  })

  const get = async (path: string) => {
    const res = await fetch(base + path)
    expect(res.status, path).toBe(200)
    return (await res.json()) as Record<string, any>
  }
  const only = (plans: QueryPlan[], table: string) => {
    const found = plans.filter((p) => p.sql.includes(`from "${table}"`))
    expect(found.length, plans.map((p) => p.sql).join('\n')).toBe(1)
    return found[0]!
  }

  it('listRepos: a page deep in the walk reads about one page of heads, whatever join the planner picks', async () => {
    q.clear()
    const page = await get('com.atproto.sync.listRepos?limit=100&cursor=25000')
    expect(page.repos).toHaveLength(100)
    // The planner's own choice, then the merge join it takes at 10 M accounts (forced here, at 31,000).
    for (const settings of [{}, { enable_nestloop: 'off', enable_hashjoin: 'off' }] as Record<string, string>[]) {
      await get('com.atproto.sync.listRepos?limit=100&cursor=25000')
      const plans = await q.plans(settings)
      for (const plan of plans) {
        expect(rowsRead(plan, 'account_head'), JSON.stringify(plan.root)).toBeLessThan(300)
        expect(rowsRead(plan, 'account')).toBeLessThan(300)
      }
    }
  })

  it('getHostStatus counts the throttled accounts of a big host from the partial index, not its 30,000 rows', async () => {
    await get('com.atproto.sync.getHostStatus?hostname=big.test') // warm
    q.clear()
    const status = await get('com.atproto.sync.getHostStatus?hostname=big.test')
    const expected = await sql<{ n: number }>`select count(*)::int as n from account where host_id = 1 and local_status = 'throttled'`.execute(t.storage.db)
    expect(status.throttledAccounts).toBe(expected.rows[0]!.n)
    expect(status.throttledAccounts).toBeGreaterThan(20)
    const count = only(await q.plans(), 'account')
    expect(indexesUsed(count)).toContain('account_throttled_idx')
    expect(rowsRead(count, 'account')).toBeLessThan(100)
  })

  it('the admin host list counts throttled accounts per host without reading every account', async () => {
    const crawler = { connections: () => [], rateLimitedHosts: () => new Map() }
    const hosts = new AdminHosts({ storage: q.storage, crawler: crawler as never, ingest: { releaseThrottled: async () => [] }, stats })
    q.clear()
    const list = await hosts.list()
    expect(list.map((h) => [h.hostname, h.throttledAccounts > 0])).toEqual([
      ['big.test', true],
      ['small.test', true],
    ])
    const perHost = only(await q.plans(), 'account')
    expect(indexesUsed(perHost)).toContain('account_throttled_idx')
    expect(rowsRead(perHost, 'account')).toBeLessThan(100)
  })

  it('the admin takedown list reads the taken-down accounts only', async () => {
    const accounts = new AdminAccounts({ storage: q.storage, ingest: {} as never, firehose: {} as never })
    q.clear()
    const dids = await accounts.listTakedowns()
    expect(dids.length).toBeGreaterThan(20)
    const plan = only(await q.plans(), 'account')
    expect(indexesUsed(plan)).toContain('account_takendown_idx')
    expect(rowsRead(plan, 'account')).toBeLessThan(100)
  })

  it('raising a big host limit releases throttled accounts in id order without counting its other accounts', async () => {
    const store = new AccountStore({ storage: q.storage })
    const host = await t.storage.db.selectFrom('host').select(['account_count']).where('id', '=', 1).executeTakeFirstOrThrow()
    const throttled = await t.storage.db
      .selectFrom('account')
      .select(['id', 'did'])
      .where('host_id', '=', 1)
      .where('local_status', '=', 'throttled')
      .where('upstream_status', '!=', 'deleted')
      .orderBy('id')
      .execute()
    // Room for exactly three more: the limit is the host's counted accounts that are not throttled, plus three.
    await t.storage.db.updateTable('host').set({ account_limit: host.account_count - throttled.length + 3 }).where('id', '=', 1).execute()
    q.clear()
    expect(await store.releaseThrottled(1)).toEqual(throttled.slice(0, 3).map((r) => r.did))
    expect(await store.releaseThrottled(1)).toEqual([])
    const plans = (await q.plans()).filter((p) => /from "account"/.test(p.sql))
    expect(plans.length).toBeGreaterThan(0)
    for (const plan of plans) expect(rowsRead(plan, 'account'), plan.sql).toBeLessThan(100)
  })
})
