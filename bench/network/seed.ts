/**
 * Seeds a migrated database with the network the relay already knows: one
 * host row per fake host (status active, cursor 0) and `accounts` accounts
 * with heads and cached identities, spread over the hosts by size. All rows
 * are made server-side (`insert … select … from generate_series`), one
 * statement per table, with the tables' indexes and constraints dropped and
 * built again after, so 10 M accounts take minutes, not hours. The
 * collections backfill's first pass is marked done (a relay that has run for
 * a while has finished it; otherwise it would describeRepo 10 M accounts).
 */
import pg from 'pg'
import { NativeSecp256k1Keypair } from '../../test/helpers/fast-keys.js'
import { SEEDED_DID_SQL } from './params.js'

export interface SeedResult {
  accounts: number
  hosts: number
  seconds: { hosts: number; account: number; head: number; identity: number; indexes: number; analyze: number; total: number }
  dbBytesAfter: number
}

/** One did:key for every seeded identity (seeded accounts send no events, so it signs nothing). */
const SEEDED_KEY = NativeSecp256k1Keypair.generate().did()

export async function seedNetwork(url: string, hostPorts: number[], sizes: number[], log: (m: string) => void): Promise<SeedResult> {
  const client = new pg.Client({ connectionString: url })
  await client.connect()
  const t = () => performance.now()
  const t0 = t()
  try {
    await client.query('set synchronous_commit = off')
    await client.query('set maintenance_work_mem = \'512MB\'')
    await client.query('set work_mem = \'256MB\'')
    const total = sizes.reduce((a, b) => a + b, 0)
    // Host rows, ids 1..N in port order, and each host's account id range [lo, hi].
    const lo: number[] = []
    let next = 1
    for (const s of sizes) {
      lo.push(next)
      next += s
    }
    await client.query(
      `insert into host (id, hostname, ssl, status, cursor, account_limit, account_count)
       select i, 'localhost:' || p, false, 'active', 0, 10000000, n
       from unnest($1::int[], $2::int[]) with ordinality as h(p, n, i)`,
      [hostPorts, sizes],
    )
    await client.query(`select setval('host_id_seq', $1)`, [hostPorts.length])
    await client.query(`create temp table ranges as select i::bigint as host_id, lo::bigint as lo, (lo + n - 1)::bigint as hi, p from unnest($1::int[], $2::int[], $3::int[]) with ordinality as r(lo, n, p, i)`, [lo, sizes, hostPorts])
    // Bulk load without the indexes and constraints, then build them once (same names as schema.sql):
    // several times faster than maintaining four B-trees and a foreign key row by row.
    await client.query(`alter table account_head drop constraint account_head_account_id_fkey, drop constraint account_head_pkey`)
    await client.query(`drop index account_host_idx`)
    await client.query(`alter table account drop constraint account_host_id_fkey, drop constraint account_did_key, drop constraint account_pkey`)
    await client.query(`alter table identity drop constraint identity_pkey`)
    const tHosts = t()
    log(`    seed: ${hostPorts.length} hosts in ${((tHosts - t0) / 1000).toFixed(1)} s; accounts…`)
    await client.query(
      `insert into account (id, did, host_id, local_status, upstream_status, created_at)
       select g, ${SEEDED_DID_SQL}, r.host_id, 'active', 'active', now() - interval '30 days'
       from ranges r, generate_series(r.lo, r.hi) g`,
    )
    await client.query(`select setval('account_id_seq', $1)`, [total])
    const tAccount = t()
    log(`    seed: ${total} accounts in ${((tAccount - tHosts) / 1000).toFixed(1)} s; heads…`)
    // rev: a TID-shaped 13-char string from the id (sortable base32 alphabet); CIDs: dag-cbor sha2-256 of the id.
    await client.query(
      `insert into account_head (account_id, rev, commit_cid, data_cid)
       select g, '3l' || lpad(translate(to_hex(g), '0189', 'wxyz'), 11, '2'),
              '\\x01711220'::bytea || sha256(('c' || g)::bytea), '\\x01711220'::bytea || sha256(('d' || g)::bytea)
       from generate_series(1, $1::bigint) g`,
      [total],
    )
    const tHead = t()
    log(`    seed: heads in ${((tHead - tAccount) / 1000).toFixed(1)} s; identities…`)
    await client.query(
      `insert into identity (did, status, signing_key, pds_endpoint, handle, error, fetched_at)
       select ${SEEDED_DID_SQL}, 'ok', '${SEEDED_KEY}', 'http://localhost:' || r.p, 'u' || g || '.seeded.test', null, now()
       from ranges r, generate_series(r.lo, r.hi) g`,
    )
    const tLoaded = t()
    log(`    seed: identities in ${((tLoaded - tHead) / 1000).toFixed(1)} s; indexes and constraints…`)
    await client.query(`alter table account add constraint account_pkey primary key (id), add constraint account_did_key unique (did)`)
    await client.query(`create index account_host_idx on account (host_id, id)`)
    await client.query(`alter table account add constraint account_host_id_fkey foreign key (host_id) references host (id)`)
    await client.query(`alter table account_head add constraint account_head_pkey primary key (account_id)`)
    await client.query(`alter table account_head add constraint account_head_account_id_fkey foreign key (account_id) references account (id) on delete cascade`)
    await client.query(`alter table identity add constraint identity_pkey primary key (did)`)
    const tIdentity = t()
    await client.query(
      `insert into relay_state (key, value) values ('collections_backfill', to_jsonb($1::bigint))
       on conflict (key) do update set value = excluded.value`,
      [total],
    )
    await client.query('analyze')
    const tAnalyze = t()
    const size = await client.query<{ n: string }>('select pg_database_size(current_database()) as n')
    const s = (a: number, b: number) => Math.round((b - a) / 100) / 10
    log(`    seed: indexes ${s(tLoaded, tIdentity)} s, analyze ${s(tIdentity, tAnalyze)} s`)
    return {
      accounts: total,
      hosts: hostPorts.length,
      seconds: { hosts: s(t0, tHosts), account: s(tHosts, tAccount), head: s(tAccount, tHead), identity: s(tHead, tLoaded), indexes: s(tLoaded, tIdentity), analyze: s(tIdentity, tAnalyze), total: s(t0, tAnalyze) },
      dbBytesAfter: Number(size.rows[0]!.n),
    }
  } finally {
    await client.end()
  }
}
