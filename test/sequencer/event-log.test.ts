import { sql } from 'kysely'
import pg from 'pg'
import { Registry } from 'prom-client'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Sequencer } from '../../src/sequencer/sequencer.js'
import { createTestDatabase, STORAGE_KINDS, type TestDatabase } from '../helpers/db.js'
import { waitUntil } from '../helpers/wait.js'
import { commitEvent, createAccounts, createHost, rev, silentLogger } from './helpers.js'

describe.each(STORAGE_KINDS)('event log on %s', (kind) => {
  let t: TestDatabase
  let s: Sequencer
  let accounts: number[]

  beforeAll(async () => {
    t = await createTestDatabase(kind)
    const hostId = await createHost(t.storage, 'pds.example.com')
    accounts = await createAccounts(t.storage, hostId, 3)
    s = new Sequencer({
      storage: t.storage,
      initialSeq: 995,
      partitionSize: 20,
      replayWindowMs: 60_000,
      retentionIntervalMs: 0,
      maxBatchDelayMs: 1,
      logger: silentLogger,
      registry: new Registry(),
    })
    await s.start()
  }, 180_000)
  afterAll(async () => {
    await s?.stop()
    await t?.cleanup()
  })

  const submit = (i: number) => s.submit(commitEvent(accounts[i % 3]!, `did:plc:test${i % 3}`, rev(i)))

  it('creates partitions ahead of the seq being written', async () => {
    // Start-up covered the first seq (995) plus half a partition ahead.
    expect((await s.eventLog.partitions()).map((p) => [p.start, p.end])).toEqual([
      [980, 1000],
      [1000, 1020],
    ])
    for (let i = 0; i < 40; i++) await submit(i) // seqs 995..1034
    const parts = await s.eventLog.partitions()
    expect(parts.map((p) => p.name)).toEqual(['event_p980', 'event_p1000', 'event_p1020', 'event_p1040'])
    // Every seq landed in the partition whose range holds it.
    for (const p of parts.slice(0, 3)) {
      const rows = await t.storage.db.selectFrom(p.name as 'event').select('seq').execute()
      expect(rows.every((r) => r.seq >= p.start && r.seq < p.end)).toBe(true)
    }
  }, 180_000)

  it('reads ranges in seq order', async () => {
    const page = await s.eventLog.readRange(1000, 7)
    expect(page.map((e) => e.seq)).toEqual([1001, 1002, 1003, 1004, 1005, 1006, 1007])
    expect(page[0]!.frame.length).toBeGreaterThan(50)
    expect(await s.eventLog.readRange(1034, 10)).toEqual([])
    expect(await s.eventLog.oldestSeq()).toBe(995)
  }, 180_000)

  it('removes an account’s events for a takedown', async () => {
    const removed = await s.eventLog.removeAccountEvents(accounts[1]!)
    expect(removed).toBe(13) // i % 3 === 1 for i in 0..39
    const left = await t.storage.db.selectFrom('event').select('account_id').distinct().execute()
    expect(left.map((r) => r.account_id).sort()).toEqual([accounts[0], accounts[2]].sort())
  }, 180_000)

  it('retention drops only expired partitions below the one being written', async () => {
    // Everything is old, including the partition holding the current seq (1034).
    await t.storage.db.updateTable('event').set({ received_at: new Date(Date.now() - 3600_000) }).execute()
    expect(await s.eventLog.enforceRetention()).toBe(2)
    expect((await s.eventLog.partitions()).map((p) => p.start)).toEqual([1020, 1040])
    expect(await s.eventLog.oldestSeq()).toBe(1021) // 1020 belonged to the taken-down account
    // A partition inside the window is kept even when an older one is gone.
    for (let i = 40; i < 50; i++) await submit(i) // seqs 1035..1044: 1040 is now current
    // 1035..1039 are fresh, so the 1020 partition's newest event is inside the window.
    expect(await s.eventLog.enforceRetention()).toBe(0)
    await t.storage.db.updateTable('event').set({ received_at: new Date(Date.now() - 3600_000) }).execute()
    expect(await s.eventLog.enforceRetention()).toBe(1) // 1020..1039 expired, 1040 current
    await t.storage.db.updateTable('event').set({ received_at: new Date() }).execute()
    for (let i = 50; i < 70; i++) await submit(i) // up to 1064
    expect(await s.eventLog.enforceRetention()).toBe(0) // 1040 is fresh
    expect((await s.eventLog.partitions())[0]!.start).toBe(1040)
  }, 180_000)
})

describe('retention beside a long transaction on the event table (postgres)', () => {
  let t: TestDatabase
  let s: Sequencer
  let accounts: number[]
  const readers: pg.Client[] = []
  const registry = new Registry()
  /** A long reader, as pg_dump is: its lock on `event` lasts until it commits. */
  const longReader = async () => {
    const c = new pg.Client({ connectionString: t.url })
    readers.push(c)
    await c.connect()
    await c.query('begin')
    await c.query('select count(*) from event')
    return c
  }

  beforeAll(async () => {
    t = await createTestDatabase('postgres')
    accounts = await createAccounts(t.storage, await createHost(t.storage, 'pds.example.com'), 1)
    s = new Sequencer({ storage: t.storage, initialSeq: 1, partitionSize: 10, replayWindowMs: 60_000, retentionIntervalMs: 0, maxBatchDelayMs: 1, logger: silentLogger, registry })
    await s.start()
  }, 60_000)
  afterAll(async () => {
    for (const c of readers) await c.end()
    await s?.stop()
    await t?.cleanup()
  })

  it('a partition drop gives way instead of queueing every insert behind a reader (a backup), and happens once it is gone', async () => {
    // Seqs 1..25, and the partitions ahead of them created now (seq 25 covers up to 40), before the reader arrives.
    for (let i = 0; i < 25; i++) await s.submit(commitEvent(accounts[0]!, 'did:plc:test0', rev(i)))
    await t.storage.db.updateTable('event').set({ received_at: new Date(Date.now() - 3600_000) }).execute()
    const before = (await s.eventLog.partitions()).map((p) => p.start)
    expect(before.slice(0, 3)).toEqual([0, 10, 20])
    const holder = await longReader()
    const retention = s.eventLog.enforceRetention()
    // Ingest keeps committing meanwhile; a DROP waiting for its lock would hold this insert until the reader ends.
    let committed = false
    void s.submit(commitEvent(accounts[0]!, 'did:plc:test0', rev(100))).then(() => (committed = true))
    await waitUntil(() => committed, 'a commit while retention waits for the reader', 20_000)
    expect(await retention).toBe(0) // postponed
    expect((await s.eventLog.partitions()).map((p) => p.start)).toEqual(before)
    const postponed = await registry.getSingleMetric('relay_event_log_partition_drops_postponed_total')!.get()
    expect(postponed.values[0]!.value).toBeGreaterThan(0)
    await holder.query('commit')
    expect(await s.eventLog.enforceRetention()).toBe(2) // 0..9 and 10..19; 20..29 holds the current seq
    expect((await s.eventLog.partitions())[0]!.start).toBe(20)
  }, 60_000)

  it('a new partition is attached beside the reader: commits never wait for it', async () => {
    const before = await s.eventLog.partitions()
    const holder = await longReader()
    // Seqs 27..41: the sequencer needs the partitions for 40.. and 50.. meanwhile.
    let committed = 0
    for (let i = 0; i < 15; i++) void s.submit(commitEvent(accounts[0]!, 'did:plc:test0', rev(200 + i))).then(() => committed++)
    await waitUntil(() => committed === 15, 'commits into new partitions while a reader holds event', 20_000)
    await holder.query('commit')
    const after = await s.eventLog.partitions()
    expect(after.length).toBeGreaterThan(before.length)
    // Attached with the parent's indexes: the seq primary key, account and time_us.
    const { rows } = await sql<{ n: number }>`select count(*)::int as n from pg_indexes where tablename = ${after.at(-1)!.name}`.execute(t.storage.db)
    expect(rows[0]!.n).toBe(3)
    await expect(sql`insert into event (seq, account_id, kind, frame) select seq, account_id, kind, frame from event where seq = 41`.execute(t.storage.db)).rejects.toThrow(/duplicate key/)
  }, 60_000)
})
