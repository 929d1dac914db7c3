import { sql } from 'kysely'
import { Registry } from 'prom-client'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { wsFrame } from '../../src/firehose/ring.js'
import { decodeFrame } from '../../src/atproto/frame.js'
import { Sequencer, SEQ_STATE_KEY } from '../../src/sequencer/sequencer.js'
import type { CommittedEvent } from '../../src/sequencer/types.js'
import { SequencerError } from '../../src/sequencer/types.js'
import { createTestDatabase, STORAGE_KINDS, type TestDatabase } from '../helpers/db.js'
import { commitEvent, createAccounts, createHost, rev, silentLogger } from './helpers.js'
import { waitUntil } from '../helpers/wait.js'

function makeSequencer(t: TestDatabase, opts: Partial<ConstructorParameters<typeof Sequencer>[0]> = {}) {
  return new Sequencer({
    storage: t.storage,
    initialSeq: 1000,
    partitionSize: 100,
    retentionIntervalMs: 0,
    logger: silentLogger,
    registry: new Registry(),
    ...opts,
  })
}

describe.each(STORAGE_KINDS)('Sequencer on %s', (kind) => {
  let t: TestDatabase
  let hostId: number
  let accounts: number[]

  beforeAll(async () => {
    t = await createTestDatabase(kind)
    hostId = await createHost(t.storage, 'pds.example.com')
    accounts = await createAccounts(t.storage, hostId, 5)
  }, 180_000)
  afterAll(async () => {
    await t?.cleanup()
  })

  it('rejects submissions before start', async () => {
    const s = makeSequencer(t)
    await expect(s.submit(commitEvent(accounts[0]!, 'did:plc:test0', rev(1)))).rejects.toBeInstanceOf(SequencerError)
  })

  it('assigns increasing seqs from the initial seq, stores frames, heads and the high-water mark, publishes after commit', async () => {
    const s = makeSequencer(t, { maxBatchEvents: 7 })
    const published: CommittedEvent[][] = []
    s.onCommitted((evts) => published.push(evts))
    await s.start()
    expect(s.currentSeq()).toBe(999)

    const submits: Promise<number>[] = []
    for (let i = 0; i < 30; i++) {
      const a = i % 5
      submits.push(s.submit(commitEvent(accounts[a]!, `did:plc:test${a}`, rev(i))))
    }
    const seqs = await Promise.all(submits)
    expect(seqs).toEqual(Array.from({ length: 30 }, (_, i) => 1000 + i))
    expect(s.currentSeq()).toBe(1029)

    // Published in order, in batches no larger than maxBatchEvents, each after its rows were committed.
    const flat = published.flat()
    expect(flat.map((e) => e.seq)).toEqual(seqs)
    expect(Math.max(...published.map((b) => b.length))).toBeLessThanOrEqual(7)

    const rows = await t.storage.db.selectFrom('event').selectAll().orderBy('seq').execute()
    expect(rows.map((r) => r.seq)).toEqual(seqs)
    for (const [i, row] of rows.entries()) {
      const f = decodeFrame(row.frame)
      expect(f.op).toBe(1)
      if (f.op !== 1) continue
      expect(f.t).toBe('#commit')
      expect(f.body.seq).toBe(row.seq)
      expect(f.body.rev).toBe(rev(i))
      expect(Buffer.from(row.frame).equals(Buffer.from(flat[i]!.frame))).toBe(true)
      // The WebSocket message built with it is exactly what ws would frame around it.
      expect(flat[i]!.wire?.equals(wsFrame(flat[i]!.frame))).toBe(true)
      expect(row.kind).toBe(1)
    }
    // The head of each account is its newest commit.
    const heads = await t.storage.db.selectFrom('account_head').selectAll().orderBy('account_id').execute()
    expect(heads.map((h) => h.rev)).toEqual([25, 26, 27, 28, 29].map(rev))
    const hw = await t.storage.db.selectFrom('relay_state').select('value').where('key', '=', SEQ_STATE_KEY).executeTakeFirst()
    expect(hw?.value).toBe(1029)
    await s.stop()
  })

  it('continues above the last committed seq after a restart, even when the log was emptied', async () => {
    await t.storage.db.deleteFrom('event').execute()
    const s = makeSequencer(t)
    await s.start()
    expect(s.currentSeq()).toBe(1029)
    expect(await s.submit(commitEvent(accounts[0]!, 'did:plc:test0', rev(100)))).toBe(1030)
    await s.stop()
    // A higher RELAY_INITIAL_SEQ floor wins.
    const s2 = makeSequencer(t, { initialSeq: 5000 })
    await s2.start()
    expect(await s2.submit(commitEvent(accounts[0]!, 'did:plc:test0', rev(101)))).toBe(5000)
    await s2.stop()
  })

  it('retries a failing batch with the same seqs and publishes nothing until it commits', async () => {
    const registry = new Registry()
    const s = makeSequencer(t, { maxBatchDelayMs: 1, registry })
    const published: number[] = []
    s.onCommitted((evts) => published.push(...evts.map((e) => e.seq)))
    await s.start()
    const base = s.currentSeq()
    // Break the batch transaction for real: the high-water mark table disappears.
    await sql`alter table relay_state rename to relay_state_away`.execute(t.storage.db)
    const p = [0, 1, 2].map((i) => s.submit(commitEvent(accounts[1]!, 'did:plc:test1', rev(200 + i))))
    const failures = async () => (await registry.getSingleMetric('relay_sequencer_commit_failures_total')!.get()).values.reduce((n, v) => n + v.value, 0)
    // The batch failed, and so did its retry: it is held, not published.
    await waitUntil(async () => (await failures()) >= 2, 'two failed commit attempts', 20_000)
    expect(published).toEqual([])
    expect(s.queuedEvents()).toBe(3)
    const stored = await t.storage.db.selectFrom('event').select('seq').where('seq', '>', base).execute()
    expect(stored).toEqual([])
    await sql`alter table relay_state_away rename to relay_state`.execute(t.storage.db)
    expect(await Promise.all(p)).toEqual([base + 1, base + 2, base + 3])
    expect(published).toEqual([base + 1, base + 2, base + 3])
    await s.stop()
  })

  it('advances a host cursor only past contiguous handled upstream seqs', async () => {
    const h2 = await createHost(t.storage, `pds2-${kind}.example.com`)
    const [acc] = await createAccounts(t.storage, h2, 1, `did:plc:cursor${kind}`)
    const s = makeSequencer(t, { maxBatchDelayMs: 1 })
    await s.start()
    const cursorInDb = async () =>
      (await t.storage.db.selectFrom('host').select('cursor').where('id', '=', h2).executeTakeFirstOrThrow()).cursor
    const tickets = new Map([10, 11, 12, 13, 14].map((n) => [n, s.openTicket(h2, n)]))
    const ev = (n: number) => commitEvent(acc!, `did:plc:cursor${kind}0`, rev(300 + n), { ticket: tickets.get(n)! })

    // 12 and 14 finish first; 10 and 11 still in flight: the cursor must not move.
    await s.submit(ev(12))
    tickets.get(14)!.drop('duplicate')
    // The database is written from the in-memory cursor, which has not moved (10 and 11 are in flight).
    expect(s.hostCursor(h2) ?? 0).toBe(0)
    expect(await cursorInDb()).toBe(0)
    // 10 is committed: the cursor reaches 10 but not 12 (11 pending).
    await s.submit(ev(10))
    await waitUntil(async () => (await cursorInDb()) === 10, 'cursor 10', 5000)
    // 11 is dropped on purpose: 10, 11, 12 are done, 13 pending.
    tickets.get(11)!.drop('duplicate')
    await waitUntil(async () => (await cursorInDb()) === 12, 'cursor 12', 5000)
    expect(s.hostCursor(h2)).toBe(12)
    // 13 commits: 14 was already handled, so the cursor jumps to 14.
    await s.submit(ev(13))
    await waitUntil(async () => (await cursorInDb()) === 14, 'cursor 14', 5000)
    await s.stop()
    expect(await cursorInDb()).toBe(14)
  })

  it('stop() commits what is queued', async () => {
    const s = makeSequencer(t, { maxBatchDelayMs: 10_000 })
    await s.start()
    const p = s.submit(commitEvent(accounts[2]!, 'did:plc:test2', rev(400)))
    await s.stop()
    const seq = await p
    const row = await t.storage.db.selectFrom('event').select('seq').where('seq', '=', seq).executeTakeFirst()
    expect(row?.seq).toBe(seq)
    await expect(s.submit(commitEvent(accounts[2]!, 'did:plc:test2', rev(401)))).rejects.toBeInstanceOf(SequencerError)
  })
})

describe('Sequencer batch size in bytes', () => {
  let t: TestDatabase
  beforeAll(async () => {
    t = await createTestDatabase('postgres')
  }, 180_000)
  afterAll(async () => {
    await t?.cleanup()
  })

  it('closes a batch at maxBatchBytes of frames (one event even if larger), so no statement outgrows what Postgres takes', async () => {
    const hostId = await createHost(t.storage, 'big.example.com')
    const [account] = await createAccounts(t.storage, hostId, 1)
    const s = makeSequencer(t, { maxBatchEvents: 100, maxBatchBytes: 20_000 })
    const published: CommittedEvent[][] = []
    s.onCommitted((evts) => published.push(evts))
    await s.start()
    // 12 frames of ~6 KB queued at once, then one of ~30 KB: at most three per batch, the large one alone.
    const submits = Array.from({ length: 12 }, (_, i) => s.submit(commitEvent(account!, 'did:plc:big', rev(i), { padding: 6_000 })))
    submits.push(s.submit(commitEvent(account!, 'did:plc:big', rev(12), { padding: 30_000 })))
    await Promise.all(submits)
    await s.stop()
    expect(published.flat()).toHaveLength(13)
    for (const batch of published) {
      const bytes = batch.reduce((n, e) => n + e.frame.length, 0)
      expect(batch.length === 1 || bytes <= 20_000).toBe(true)
    }
    expect(published.length).toBeGreaterThanOrEqual(5)
  })
})
