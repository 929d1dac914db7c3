/**
 * Jetstream time cursors: the sequencer gives every event a `time_us` once, with its seq, strictly
 * increasing across seqs and across restarts (even when the clock is behind what is stored), stores
 * it in the event row and hands it to listeners with the committed event.
 */
import { sql } from 'kysely'
import { Registry } from 'prom-client'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Sequencer } from '../../src/sequencer/sequencer.js'
import type { CommittedEvent } from '../../src/sequencer/types.js'
import { createTestDatabase, STORAGE_KINDS, type TestDatabase } from '../helpers/db.js'
import { commitEvent, createAccounts, createHost, rev, silentLogger } from './helpers.js'

function makeSequencer(t: TestDatabase) {
  return new Sequencer({ storage: t.storage, initialSeq: 1, partitionSize: 1000, retentionIntervalMs: 0, logger: silentLogger, registry: new Registry() })
}

describe.each(STORAGE_KINDS)('time_us on %s', (kind) => {
  let t: TestDatabase
  let accounts: number[]

  beforeAll(async () => {
    t = await createTestDatabase(kind)
    accounts = await createAccounts(t.storage, await createHost(t.storage, 'pds.example.com'), 3)
  }, 180_000)
  afterAll(async () => {
    await t?.cleanup()
  })

  it('is strictly increasing with seq, stored with the row and carried by the committed event; survives a restart', async () => {
    const s = makeSequencer(t)
    const published: CommittedEvent[] = []
    s.onCommitted((evts) => published.push(...evts))
    await s.start()
    const before = Date.now() * 1000
    await Promise.all(Array.from({ length: 40 }, (_, i) => s.submit(commitEvent(accounts[i % 3]!, `did:plc:test${i % 3}`, rev(i)))))
    await s.stop()
    expect(published).toHaveLength(40)
    for (let i = 1; i < published.length; i++) expect(published[i]!.timeUs).toBeGreaterThan(published[i - 1]!.timeUs)
    expect(published[0]!.timeUs).toBeGreaterThanOrEqual(before - 1000)
    const rows = await t.storage.db.selectFrom('event').select(['seq', 'time_us']).orderBy('seq').execute()
    expect(rows.map((r) => [r.seq, Number(r.time_us)])).toEqual(published.map((e) => [e.seq, e.timeUs]))

    // A stored time ahead of the clock (a clock stepped back, or a faster clock before a restart): the next start continues above it.
    const ahead = Date.now() * 1000 + 3_600_000_000
    await sql`update event set time_us = ${ahead} where seq = ${published.at(-1)!.seq}`.execute(t.storage.db)
    const s2 = makeSequencer(t)
    const later: CommittedEvent[] = []
    s2.onCommitted((evts) => later.push(...evts))
    await s2.start()
    await Promise.all([0, 1, 2].map((i) => s2.submit(commitEvent(accounts[i]!, `did:plc:test${i}`, rev(100 + i)))))
    await s2.stop()
    expect(later.map((e) => e.timeUs)).toEqual([ahead + 1, ahead + 2, ahead + 3])
  })

  it('is indexed on every partition, so a time cursor finds its seq without a scan', async () => {
    const { rows } = await sql<{ tablename: string; indexdef: string }>`select tablename, indexdef from pg_indexes where indexdef like '%(time_us)%'`.execute(t.storage.db)
    const partitions = await sql<{ relname: string }>`select c.relname from pg_inherits i join pg_class c on c.oid = i.inhrelid where i.inhparent = 'event'::regclass`.execute(t.storage.db)
    expect(partitions.rows.length).toBeGreaterThan(0)
    for (const p of partitions.rows) expect(rows.map((r) => r.tablename), `time_us index on ${p.relname}`).toContain(p.relname)
  })
})
