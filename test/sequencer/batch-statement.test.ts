/**
 * The hand-built batch statement: every placeholder numbered once, in order,
 * matching its parameter; nothing to write gives no statement. (That it
 * commits correctly is proven by the sequencer tests on Postgres and PGlite.)
 */
import { describe, expect, it } from 'vitest'
import { batchCommitStatement } from '../../src/sequencer/batch-statement.js'
import type { EventRow } from '../../src/sequencer/event-log.js'

const cid = (n: number) => new Uint8Array([1, 0x71, 0x12, 0x20, n])

describe('batchCommitStatement', () => {
  it('returns nothing for an empty batch', () => {
    expect(batchCommitStatement({ events: [], heads: new Map(), cursors: new Map() })).toBeUndefined()
  })

  it('numbers every placeholder once, in order, with its parameter', () => {
    const events: EventRow[] = [1, 2, 3].map((seq) => ({ seq, accountId: 10 + seq, kind: 1, frame: new Uint8Array([seq]), commitCid: seq === 2 ? null : cid(seq), timeUs: 1_700_000_000_000_000 + seq }))
    const heads = new Map([
      [11, { rev: '3kaaaaaaaaa22', commitCid: cid(1), dataCid: cid(9) }],
      [13, { rev: '3kaaaaaaaab22', commitCid: cid(3), dataCid: cid(8) }],
    ])
    const cursors = new Map([[7, 1234]])
    const q = batchCommitStatement({ events, heads, cursors, highWater: { key: 'seq', seq: 3 } })!
    expect(q.parameters).toHaveLength(3 * 6 + 2 * 4 + 2 + 2)
    const numbers = [...q.sql.matchAll(/\$(\d+)::/g)].map((m) => Number(m[1]))
    expect(numbers).toEqual(Array.from({ length: q.parameters.length }, (_, i) => i + 1))
    expect(q.parameters.slice(0, 6)).toEqual([1, 11, 1, events[0]!.frame, events[0]!.commitCid, 1_700_000_000_000_001])
    expect(q.parameters.slice(6, 12)).toEqual([2, 12, 1, events[1]!.frame, null, 1_700_000_000_000_002])
    expect(q.parameters.slice(18, 22)).toEqual([11, '3kaaaaaaaaa22', cid(1), cid(9)])
    expect(q.parameters.slice(-4)).toEqual([7, 1234, 'seq', '3'])
    expect(q.sql).toMatch(/^with ev as \(insert into event .*\), heads as \(.*\), cursors as \(.*\), high_water as \(.*\) select 1$/s)
  })

  it('writes only the parts it is given (cursor-only batches after drops)', () => {
    const q = batchCommitStatement({ events: [], heads: new Map(), cursors: new Map([[1, 5], [2, 9]]) })!
    expect(q.sql).toMatch(/^with cursors as \(update host .*\) select 1$/)
    expect(q.parameters).toEqual([1, 5, 2, 9])
  })
})
