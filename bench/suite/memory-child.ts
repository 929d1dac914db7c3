/**
 * Child process (fresh heap): memory with many accounts known. Seeds
 * `accounts` rows with heads and cached identities straight into a fresh
 * database, reads every one through the relay's own caches (account LRU,
 * identity LRU), then ingests the whole corpus as fast as it goes, sampling
 * RSS. Prints one JSON line.
 *
 *   node --expose-gc --import tsx bench/suite/memory-child.ts '{"params":{…},"accounts":100000,"deadlineMs":…}'
 */
import { randomBytes } from 'node:crypto'
import { NativeSecp256k1Keypair } from '../../test/helpers/fast-keys.js'
import type { Relay } from '../../src/relay.js'
import type { CorpusParams } from '../corpus/params.js'
import { runIngest } from './ingest.js'

const B32 = 'abcdefghijklmnopqrstuvwxyz234567'

function fakePlcDid(i: number): string {
  // did:plc: + 24 base32 chars: the index (unique) then random filler.
  let id = ''
  for (let n = i, k = 0; k < 8; k++, n = Math.floor(n / 32)) id = B32[n % 32]! + id
  for (const b of randomBytes(16)) id += B32[b & 31]
  return `did:plc:${id}`
}

function tid(i: number): string {
  // 13 base32-sortable chars; valid TID alphabet.
  const S32 = '234567abcdefghijklmnopqrstuvwxyz'
  let n = BigInt(1_700_000_000_000_000 + i) << 10n
  let s = ''
  for (let k = 0; k < 13; k++) {
    s = S32[Number(n & 31n)]! + s
    n >>= 5n
  }
  return s
}

function mb(bytes: number): number {
  return Math.round((bytes / 2 ** 20) * 10) / 10
}

function memory(): { rssMB: number; heapUsedMB: number; arrayBuffersMB: number; externalMB: number } {
  const m = process.memoryUsage()
  return { rssMB: mb(m.rss), heapUsedMB: mb(m.heapUsed), arrayBuffersMB: mb(m.arrayBuffers), externalMB: mb(m.external) }
}

function gcNow(): void {
  const gc = (globalThis as { gc?: () => void }).gc
  gc?.()
  gc?.()
}

async function seedAndTouch(relay: Relay, count: number, log: (m: string) => void): Promise<Record<string, unknown>> {
  gcNow()
  const before = memory()
  const db = relay.storage.db
  const t0 = performance.now()
  const host = await db
    .insertInto('host')
    .values({ hostname: 'seeded.invalid', ssl: true, status: 'banned', account_limit: 1_000_000_000, account_count: count })
    .returning('id')
    .executeTakeFirstOrThrow()
  const keys = Array.from({ length: 64 }, () => NativeSecp256k1Keypair.generate().did())
  const dids: string[] = []
  const CHUNK = 2000
  for (let i = 0; i < count; i += CHUNK) {
    const n = Math.min(CHUNK, count - i)
    const batch = Array.from({ length: n }, (_, k) => fakePlcDid(i + k))
    dids.push(...batch)
    const rows = await db
      .insertInto('account')
      .values(batch.map((did) => ({ did, host_id: host.id, local_status: 'active', upstream_status: 'active' })))
      .returning(['id'])
      .execute()
    await db
      .insertInto('account_head')
      .values(rows.map((r, k) => ({ account_id: r.id, rev: tid(i + k), commit_cid: randomBytes(36), data_cid: randomBytes(36) })))
      .execute()
    await db
      .insertInto('identity')
      .values(
        batch.map((did, k) => ({
          did,
          status: 'ok',
          signing_key: keys[(i + k) % keys.length]!,
          pds_endpoint: 'https://seeded.invalid',
          handle: `user${i + k}.seeded.invalid`,
          error: null,
          fetched_at: new Date(),
        })),
      )
      .execute()
  }
  const seededS = (performance.now() - t0) / 1000
  log(`    seeded ${count} accounts in ${seededS.toFixed(1)} s; reading them through the relay's caches`)
  const t1 = performance.now()
  let next = 0
  let missing = 0
  await Promise.all(
    Array.from({ length: 32 }, async () => {
      while (next < dids.length) {
        const did = dids[next++]!
        const [acct, ident] = await Promise.all([relay.ingest.accounts.get(did), relay.identity.directory.resolve(did)])
        if (acct === undefined || ident.status !== 'ok') missing++
      }
    }),
  )
  const touchS = (performance.now() - t1) / 1000
  if (missing > 0) throw new Error(`${missing} seeded accounts did not read back`)
  gcNow()
  const after = memory()
  return {
    seededAccounts: count,
    seedSeconds: seededS,
    touchSeconds: touchS,
    accountCache: relay.ingest.accounts.cachedCount,
    identityCache: relay.identity.directory.cacheSize,
    beforeSeed: before,
    afterTouch: after,
  }
}

const args = JSON.parse(process.argv[2] ?? '{}') as { params: Partial<CorpusParams>; accounts: number; deadlineMs: number }
const log = (m: string) => console.error(m)
const result = await runIngest({
  kind: 'postgres',
  params: args.params,
  deadlineMs: args.deadlineMs,
  beforeHosts: (relay) => seedAndTouch(relay, args.accounts, log),
  log,
})
gcNow()
console.log(
  JSON.stringify({
    ...result,
    endRssMB: mb(process.memoryUsage.rss()),
  }),
)
process.exit(0)
