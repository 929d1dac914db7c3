/**
 * The batch statement (src/sequencer/batch-statement.ts) run on both databases: what it writes is
 * exactly the batch (events with NULL commit CIDs, head upserts, host cursors, the high-water
 * mark), a part absent from the batch is absent from the statement, and its text does not grow
 * with the batch (each column is one binary array parameter).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { batchCommitStatement } from '../../src/sequencer/batch-statement.js'
import { EventLog, type EventRow } from '../../src/sequencer/event-log.js'
import { createTestDatabase, STORAGE_KINDS, type TestDatabase } from '../helpers/db.js'
import { createAccounts, createHost, fakeCid, silentLogger } from './helpers.js'
import { Registry } from 'prom-client'

const T0 = 1_700_000_000_000_000

function rows(accounts: number[], firstSeq: number, n: number): EventRow[] {
  return Array.from({ length: n }, (_, i) => ({
    seq: firstSeq + i,
    accountId: accounts[i % accounts.length]!,
    kind: ((i % 4) + 1) as EventRow['kind'],
    frame: new Uint8Array(100 + i).fill(i & 255),
    commitCid: i % 3 === 1 ? null : fakeCid(`c${firstSeq + i}`),
    timeUs: T0 + firstSeq + i,
  }))
}

describe('batchCommitStatement text', () => {
  it('returns nothing for an empty batch', () => {
    expect(batchCommitStatement({ events: [], heads: new Map(), cursors: new Map() })).toBeUndefined()
  })

  it('has a fixed text whatever the batch size: one parameter per column', () => {
    const small = batchCommitStatement({ events: rows([1], 1, 2), heads: new Map(), cursors: new Map([[1, 5]]) })!
    const large = batchCommitStatement({ events: rows([1], 1, 500), heads: new Map(), cursors: new Map([[1, 5], [2, 7]]) })!
    expect(large.sql).toBe(small.sql)
    expect(large.parameters).toHaveLength(8)
    expect(large.sql).toMatch(/^with ev as \(insert into event .*\), cursors as \(update host .*\) select 1$/s)
  })

  it('writes only the parts it is given (cursor-only batches after drops)', () => {
    const q = batchCommitStatement({ events: [], heads: new Map(), cursors: new Map([[1, 5], [2, 9]]) })!
    expect(q.sql).toMatch(/^with cursors as \(update host .*\) select 1$/)
    expect(q.parameters).toHaveLength(2)
  })
})

describe.each(STORAGE_KINDS)('batchCommitStatement on %s', (kind) => {
  let t: TestDatabase
  let hostA: number
  let hostB: number
  let accounts: number[]
  beforeAll(async () => {
    t = await createTestDatabase(kind)
    hostA = await createHost(t.storage, 'a.test')
    hostB = await createHost(t.storage, 'b.test')
    accounts = await createAccounts(t.storage, hostA, 3)
    const log = new EventLog({ storage: t.storage, currentSeq: () => 0, logger: silentLogger, registry: new Registry(), retentionIntervalMs: 0 })
    await log.ensurePartitions(1, 1_000)
  }, 120_000)
  afterAll(async () => t?.cleanup())

  it('stores every event, head, cursor and the high-water mark of the batch', async () => {
    const events = rows(accounts, 1, 250)
    const heads = new Map([
      [accounts[0]!, { rev: '3kaaaaaaaaa22', commitCid: fakeCid('h0'), dataCid: fakeCid('d0') }],
      [accounts[1]!, { rev: '3kaaaaaaaab22', commitCid: fakeCid('h1'), dataCid: fakeCid('d1') }],
    ])
    const cursors = new Map([
      [hostA, 9_007_199_254_740_000],
      [hostB, 42],
    ])
    await t.storage.db.executeQuery(batchCommitStatement({ events, heads, cursors, highWater: { key: 'seq', seq: 250 } })!)

    const stored = await t.storage.db.selectFrom('event').select(['seq', 'account_id', 'kind', 'frame', 'commit_cid', 'time_us']).orderBy('seq').execute()
    expect(stored).toHaveLength(250)
    stored.forEach((r, i) => {
      const e = events[i]!
      expect([Number(r.seq), Number(r.account_id), Number(r.kind), Number(r.time_us)]).toEqual([e.seq, e.accountId, e.kind, e.timeUs])
      expect(Buffer.from(r.frame)).toEqual(Buffer.from(e.frame))
      expect(r.commit_cid === null ? null : Buffer.from(r.commit_cid)).toEqual(e.commitCid === null ? null : Buffer.from(e.commitCid))
    })

    const storedHeads = await t.storage.db.selectFrom('account_head').selectAll().orderBy('account_id').execute()
    expect(storedHeads.map((h) => [Number(h.account_id), h.rev, Buffer.from(h.data_cid)])).toEqual([
      [accounts[0], '3kaaaaaaaaa22', Buffer.from(fakeCid('d0'))],
      [accounts[1], '3kaaaaaaaab22', Buffer.from(fakeCid('d1'))],
    ])
    const hosts = await t.storage.db.selectFrom('host').select(['id', 'cursor']).orderBy('id').execute()
    expect(hosts.map((h) => [Number(h.id), Number(h.cursor)])).toEqual([
      [hostA, 9_007_199_254_740_000],
      [hostB, 42],
    ])
    const hw = await t.storage.db.selectFrom('relay_state').select('value').where('key', '=', 'seq').executeTakeFirstOrThrow()
    expect(Number(hw.value)).toBe(250)
  })

  it('upserts heads and skips a head whose account is gone', async () => {
    const heads = new Map([
      [accounts[0]!, { rev: '3kaaaaaaaac22', commitCid: fakeCid('h2'), dataCid: fakeCid('d2') }],
      [999_999, { rev: '3kaaaaaaaac22', commitCid: fakeCid('x'), dataCid: fakeCid('x') }],
    ])
    await t.storage.db.executeQuery(batchCommitStatement({ events: rows(accounts, 251, 1), heads, cursors: new Map() })!)
    const h = await t.storage.db.selectFrom('account_head').selectAll().where('account_id', '=', accounts[0]!).executeTakeFirstOrThrow()
    expect(h.rev).toBe('3kaaaaaaaac22')
    expect(await t.storage.db.selectFrom('account_head').select('account_id').where('account_id', '=', 999_999).execute()).toEqual([])
  })
})
