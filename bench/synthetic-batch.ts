/**
 * Synthetic batch-commit input for the benches that time the batch statement
 * (batch-statement.bench.ts, db-writer.bench.ts): hosts and accounts seeded into
 * a migrated database, and batches of events of random frames with their heads
 * and one cursor per host.
 */
import { randomBytes } from 'node:crypto'
import type { BatchWrites } from '../src/sequencer/batch-statement.js'
import type { EventRow } from '../src/sequencer/event-log.js'
import type { Storage } from '../src/storage/db.js'
import { migrate } from '../src/storage/migrate.js'
import type { AccountHead } from '../src/storage/types.js'

export const SYNTHETIC_ACCOUNTS = 2_000
export const SYNTHETIC_HOSTS = 20

/** Migrates `storage` and seeds the hosts and accounts; returns the account ids. */
export async function seedSyntheticAccounts(storage: Storage): Promise<number[]> {
  await migrate(storage)
  for (let h = 1; h <= SYNTHETIC_HOSTS; h++) await storage.db.insertInto('host').values({ hostname: `h${h}.test`, account_limit: 1e9 }).execute()
  const rows = await storage.db
    .insertInto('account')
    .values(Array.from({ length: SYNTHETIC_ACCOUNTS }, (_, i) => ({ did: `did:plc:bench${i}`, host_id: 1 + (i % SYNTHETIC_HOSTS) })))
    .returning('id')
    .execute()
  return rows.map((r) => r.id)
}

/** `events` events from `seq` on, of `frameBytes` random bytes each, with their heads, host cursors and the high-water mark. */
export function syntheticBatch(seq: number, accountIds: number[], events: number, frameBytes: number): BatchWrites {
  const rows: EventRow[] = []
  const heads = new Map<number, AccountHead>()
  for (let i = 0; i < events; i++) {
    const accountId = accountIds[(seq + i) % accountIds.length]!
    rows.push({ seq: seq + i, accountId, kind: 1, frame: randomBytes(frameBytes), commitCid: randomBytes(36), timeUs: 1_700_000_000_000_000 + seq + i })
    heads.set(accountId, { rev: '3l' + String(seq + i).padStart(11, '2'), commitCid: randomBytes(36), dataCid: randomBytes(36) })
  }
  const cursors = new Map<number, number>()
  for (let h = 1; h <= SYNTHETIC_HOSTS; h++) cursors.set(h, seq + h)
  return { events: rows, heads, cursors, highWater: { key: 'seq', seq: seq + events - 1 } }
}
