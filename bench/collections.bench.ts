/**
 * Costs of the listReposByCollection index (docs/benchmarks.md, "listReposByCollection").
 *
 *   npx tsx bench/collections.bench.ts cpu     the collection decision per #commit, against the event's verify cost
 *   npx tsx bench/collections.bench.ts db      bytes per pair and page times on PostgreSQL (BENCH_DATABASE_URL,
 *                                              default postgres://postgres@127.0.0.1:5432/postgres; a scratch
 *                                              database is created and dropped), PAIRS=10000000 to tune
 *
 * cpu: a repo of RECORDS (2,600) records; 32 commits that each create a record in a new collection and
 * 32 that each delete one record (half of them the last of their collection); verifyCommitEvent in
 * strict mode (which now includes the decision) and collectionChanges alone on the same decoded slices.
 */
import { loadavg } from 'node:os'
import { WriteOpAction } from '@atproto/repo'
import pg from 'pg'
import { readCarSlice } from '../src/atproto/car.js'
import { decodeCommit } from '../src/atproto/commit.js'
import { assertNativeSecp256k1 } from '../src/atproto/keys.js'
import { MstTree, collectionChanges, invertOnTree, normaliseOps, type CollectionOp, type MstOp } from '../src/atproto/mst/index.js'
import { verifyCommitEvent, type VerifyOptions } from '../src/atproto/verify.js'
import { decodeFrame, encodeMessageFrame, type MessageFrame } from '../src/atproto/frame.js'
import { pageQuery } from '../src/api/list-repos-by-collection.js'
import { migrate } from '../src/storage/migrate.js'
import { openStorage } from '../src/storage/db.js'
import { TestRepo, commitBody, createWrite } from '../test/atproto/support/events.js'

const RECORDS = Number(process.env.RECORDS ?? 2600)
const EVENTS = 32

function cpuTime(fn: (i: number) => void, ms = 400, runs = 5): number {
  const one = () => {
    let n = 0
    const c0 = process.cpuUsage()
    const end = performance.now() + ms
    while (performance.now() < end) for (let k = 0; k < 8; k++) fn(n++)
    const c = process.cpuUsage(c0)
    return (c.user + c.system) / n
  }
  one()
  const all = Array.from({ length: runs }, one).sort((a, b) => a - b)
  return all[runs >> 1]!
}

async function cpu(): Promise<void> {
  assertNativeSecp256k1()
  console.log(`load average: ${loadavg().map((l) => l.toFixed(2)).join(' ')}`)
  const repo = await TestRepo.create({ curve: 'k256', records: RECORDS })
  const creates: Uint8Array[] = []
  const deletes: Uint8Array[] = []
  const made: { collection: string; rkey: string }[] = []
  for (let i = 0; i < EVENTS; i++) {
    // Two records in each of 16 new collections: the first delete keeps the collection, the second empties it.
    const w = createWrite(`com.example.bench${i >> 1}`, RECORDS + i)
    made.push({ collection: w.collection, rkey: w.rkey })
    creates.push(encodeMessageFrame('#commit', commitBody(await repo.commit([w]), {}, i)))
  }
  for (const [i, m] of made.entries()) {
    const parts = await repo.commit([{ action: WriteOpAction.Delete, collection: m.collection, rkey: m.rkey }])
    deletes.push(encodeMessageFrame('#commit', commitBody(parts, {}, 100 + i)))
  }
  const options: VerifyOptions = { strict: true, hasStoredHead: true }
  for (const [name, frames] of [['create', creates], ['delete', deletes]] as const) {
    const bodies = frames.map((f) => (decodeFrame(f) as MessageFrame).body)
    let emptied = 0
    for (const b of bodies) {
      const r = verifyCommitEvent(b, repo.publicKey, options)
      if (!r.ok) throw new Error(`${name} does not verify: ${r.reason} ${r.message}`)
      emptied += r.facts.collections.emptied.length
      if (r.facts.collections.undecided.length > 0) throw new Error('undecided in a strict commit')
    }
    const slices = bodies.map((b) => readCarSlice((b.blocks as { buf: Uint8Array }).buf))
    const roots = slices.map((s) => decodeCommit(s.blocks.get(s.roots[0]!)!).data)
    const ops = bodies.map((b) => b.ops as CollectionOp[])
    const mstOps = bodies.map((b) =>
      (b.ops as { action: MstOp['action']; path: string; cid: { bytes: Uint8Array } | null; prev?: { bytes: Uint8Array } }[]).map(
        (o): MstOp => ({ action: o.action, path: o.path, cid: o.cid?.bytes ?? null, prev: o.prev?.bytes ?? null }),
      ),
    )
    const normal = mstOps.map((o) => normaliseOps(o))
    const verifyUs = cpuTime((i) => verifyCommitEvent(bodies[i % EVENTS]!, repo.publicKey, options))
    // As verify runs it: the decision on the loaded new tree, then the inversion on the same tree.
    const invertOnly = cpuTime((i) => invertOnTree(MstTree.load(roots[i % EVENTS]!, slices[i % EVENTS]!.blocks), normal[i % EVENTS]!))
    const withDecision = cpuTime((i) => {
      const tree = MstTree.load(roots[i % EVENTS]!, slices[i % EVENTS]!.blocks)
      collectionChanges(tree, slices[i % EVENTS]!.blocks, ops[i % EVENTS]!)
      invertOnTree(tree, normal[i % EVENTS]!)
    })
    const standalone = cpuTime((i) => collectionChanges(roots[i % EVENTS]!, slices[i % EVENTS]!.blocks, ops[i % EVENTS]!))
    const added = Math.max(0, withDecision - invertOnly)
    console.log(
      `${name}: verifyCommitEvent ${verifyUs.toFixed(1)} µs; inversion ${invertOnly.toFixed(2)} µs, inversion + decision ${withDecision.toFixed(2)} µs ` +
        `→ added ${added.toFixed(2)} µs = ${((added / verifyUs) * 100).toFixed(2)} % of verify (the decision on a tree of its own: ${standalone.toFixed(2)} µs); ` +
        `collections emptied in ${emptied}/${EVENTS} events`,
    )
  }
}

const NSIDS = [
  'app.bsky.feed.post', 'app.bsky.feed.like', 'app.bsky.graph.follow', 'app.bsky.feed.repost', 'app.bsky.actor.profile',
  'app.bsky.graph.block', 'app.bsky.graph.list', 'app.bsky.graph.listitem', 'app.bsky.feed.threadgate', 'app.bsky.feed.postgate',
  'app.bsky.feed.generator', 'app.bsky.graph.starterpack', 'chat.bsky.actor.declaration', 'app.bsky.graph.listblock',
  'fyi.unravel.frontpage.post', 'sh.tangled.repo', 'blue.flashes.actor.portfolio', 'com.whtwnd.blog.entry',
  'events.smokesignal.calendar.event', 'xyz.statusphere.status',
]

async function db(): Promise<void> {
  const admin = process.env.BENCH_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres'
  const pairs = Number(process.env.PAIRS ?? 10_000_000)
  const name = `bench_coll_${process.pid}`
  const root = new pg.Client({ connectionString: admin })
  await root.connect()
  await root.query(`create database ${name}`)
  const url = new URL(admin)
  url.pathname = `/${name}`
  const storage = await openStorage({ dataDir: '', databaseUrl: url.href, poolSize: 2 })
  const client = new pg.Client({ connectionString: url.href })
  try {
    await migrate(storage)
    await client.connect()
    // Accounts with 5 collections each on average (posts, likes, follows and profile for nearly all; the rest rare).
    const accounts = Math.ceil(pairs / 5)
    let t = performance.now()
    await client.query(`insert into host (id, hostname, account_limit) values (1, 'pds.bench', 100000000)`)
    await client.query(`insert into account (id, did, host_id) select i, 'did:plc:' || md5(i::text), 1 from generate_series(1, $1) i`, [accounts])
    // Every account: post, like, follow, profile (4); then one more collection drawn from the other 16, skewed.
    await client.query(`insert into collection (nsid) select unnest($1::text[])`, [NSIDS])
    // FAST_FILL=1 (for page times at 10 M pairs in a few minutes): sorted load, indexes built afterwards (packed tighter
    // than ingest leaves them, so its bytes per pair are not the ones to quote).
    const fast = process.env.FAST_FILL === '1'
    if (fast) await client.query('alter table repo_collection drop constraint repo_collection_pkey; drop index repo_collection_account_idx')
    // Random order, as ingest inserts them (a sorted bulk load would pack the indexes tighter than real life).
    await client.query(
      `insert into repo_collection (collection_id, account_id)
       select x.c, x.i from (
         select c, i from generate_series(1, $1::int) i, generate_series(1, 4) c
         union all
         select 5 + floor(16 * power(random(), 3))::int, i from generate_series(1, $1::int) i
       ) x ${fast ? '' : 'order by random() on conflict do nothing'}`,
      [accounts],
    )
    if (fast) {
      await client.query('set maintenance_work_mem = \'256MB\'')
      await client.query('alter table repo_collection add primary key (collection_id, account_id)')
      await client.query('create index repo_collection_account_idx on repo_collection (account_id)')
    }
    await client.query('vacuum analyze repo_collection')
    await client.query('analyze account')
    const count = Number((await client.query('select count(*) as n from repo_collection')).rows[0].n)
    console.log(`filled ${count} pairs over ${accounts} accounts in ${((performance.now() - t) / 1000).toFixed(1)} s`)
    const size = (await client.query(
      `select pg_relation_size('repo_collection') as heap, pg_relation_size('repo_collection_pkey') as pkey,
              pg_relation_size('repo_collection_account_idx') as by_account, pg_total_relation_size('repo_collection') as total`,
    )).rows[0] as Record<string, string>
    const per = (v: string) => (Number(v) / count).toFixed(1)
    console.log(`bytes per pair: total ${per(size.total!)} (heap ${per(size.heap!)}, primary key ${per(size.pkey!)}, account index ${per(size.by_account!)})`)

    // The alternative layout: the collection name in every row.
    if (!fast) {
    await client.query(`create table bench_text (collection text not null, account_id int8 not null, primary key (collection, account_id))`)
    await client.query(`create index bench_text_account_idx on bench_text (account_id)`)
    await client.query(`insert into bench_text select c.nsid, r.account_id from repo_collection r join collection c on c.id = r.collection_id order by random()`)
    const alt = (await client.query(
      `select pg_relation_size('bench_text') as heap, pg_relation_size('bench_text_pkey') as pkey,
              pg_relation_size('bench_text_account_idx') as by_account, pg_total_relation_size('bench_text') as total`,
    )).rows[0] as Record<string, string>
    console.log(`alternative (collection text in every row): total ${per(alt.total!)} (heap ${per(alt.heap!)}, primary key ${per(alt.pkey!)}, account index ${per(alt.by_account!)})`)
    await client.query('drop table bench_text')
    }

    const time = async (label: string, collections: string[], after: number, n = 500, reps = 20) => {
      const q = pageQuery(collections, after, n + 1).compile(storage.db)
      const runs: number[] = []
      let rows = 0
      for (let r = 0; r < reps; r++) {
        t = performance.now()
        rows = (await client.query(q.sql, q.parameters as unknown[])).rows.length
        runs.push(performance.now() - t)
      }
      runs.sort((x, y) => x - y)
      console.log(`${label.padEnd(58)} median ${runs[reps >> 1]!.toFixed(2)} ms  p90 ${runs[Math.floor(reps * 0.9)]!.toFixed(2)} ms  (${rows} rows)`)
    }
    for (const n of [500, 2000]) {
      await time(`app.bsky.feed.post, first page, limit ${n}`, ['app.bsky.feed.post'], 0, n)
      await time(`app.bsky.feed.post, cursor at 90% (account ${Math.floor(accounts * 0.9)}), limit ${n}`, ['app.bsky.feed.post'], Math.floor(accounts * 0.9), n)
    }
    await time('rare collection (xyz.statusphere.status), first page', ['xyz.statusphere.status'], 0)
    await time('rare collection, cursor at 90%', ['xyz.statusphere.status'], Math.floor(accounts * 0.9))
    await time('union of 3 (post, like, a rare one), cursor at 90%', ['app.bsky.feed.post', 'app.bsky.feed.like', 'xyz.statusphere.status'], Math.floor(accounts * 0.9))
    const plan = pageQuery(['app.bsky.feed.post'], Math.floor(accounts * 0.9), 501).compile(storage.db)
    const explain = await client.query(`explain (analyze, buffers) ${plan.sql}`, plan.parameters as unknown[])
    console.log(explain.rows.map((r: Record<string, string>) => `  ${r['QUERY PLAN']}`).join('\n'))
  } finally {
    await client.end().catch(() => undefined)
    await storage.close()
    await root.query(`drop database if exists ${name} with (force)`)
    await root.end()
  }
}

const mode = process.argv[2]
if (mode === 'cpu') await cpu()
else if (mode === 'db') await db()
else throw new Error('usage: collections.bench.ts cpu|db')
