/**
 * The pull-model cut-off rule (src/firehose/slow-reader.ts) and the live-write pacing
 * (src/firehose/live-batch.ts) on their own, with an explicit clock for the rule.
 * Over real sockets: slow-consumer.test.ts (firehose) and test/jetstream/slow-reader.test.ts.
 */
import { describe, expect, it } from 'vitest'
import { LiveBatcher } from '../../src/firehose/live-batch.js'
import type { RingEntry } from '../../src/firehose/ring.js'
import { ReadProgress, SlowReaderPolicy } from '../../src/firehose/slow-reader.js'
import { waitUntil } from '../helpers/wait.js'

describe('SlowReaderPolicy', () => {
  const policy = new SlowReaderPolicy({ maxLag: 100, minRate: 10, windowMs: 1_000 })

  it('never judges a reader within the lag, however long it reads nothing', () => {
    const p = new ReadProgress()
    for (let t = 0; t <= 10_000; t += 250) expect(policy.judge(p, 0, 100, t).slow).toBe(false)
  })

  it('closes a reader beyond the lag only once it has read below the floor for a whole window', () => {
    const p = new ReadProgress()
    expect(policy.judge(p, 0, 500, 0).slow).toBe(false) // the window starts
    expect(policy.judge(p, 5, 500, 999).slow).toBe(false) // not a whole window yet
    expect(policy.judge(p, 5, 500, 1_000)).toEqual({ slow: true, lag: 495, rate: 5, seconds: 1 })
  })

  it('keeps a reader beyond the lag that reads at the floor or above, window after window', () => {
    const p = new ReadProgress()
    let position = 0
    for (let t = 0; t <= 20_000; t += 500) {
      expect(policy.judge(p, position, 100_000, t).slow).toBe(false)
      position += 5 // 10 seqs/s
    }
  })

  it('starts over when a reader comes back within the lag', () => {
    const p = new ReadProgress()
    expect(policy.judge(p, 0, 500, 0).slow).toBe(false)
    expect(policy.judge(p, 450, 500, 900).slow).toBe(false) // within the lag: forgotten
    expect(policy.judge(p, 450, 1_000, 1_000).slow).toBe(false) // beyond again: a new window
    expect(policy.judge(p, 450, 1_000, 1_999).slow).toBe(false)
    expect(policy.judge(p, 450, 1_000, 2_000).slow).toBe(true)
  })

  it('rejects limits that would cut off everyone or no one', () => {
    expect(() => new SlowReaderPolicy({ maxLag: 0, minRate: 10, windowMs: 1_000 })).toThrow(RangeError)
    expect(() => new SlowReaderPolicy({ maxLag: 10, minRate: 0, windowMs: 1_000 })).toThrow(RangeError)
    expect(() => new SlowReaderPolicy({ maxLag: 10, minRate: 10, windowMs: 0 })).toThrow(RangeError)
  })
})

describe('LiveBatcher', () => {
  const entry = (seq: number): RingEntry => ({ seq, accountId: 1, wire: Buffer.from([seq]), removed: false })

  it('with a 0 interval writes each batch as it arrives', () => {
    const writes: number[][] = []
    const b = new LiveBatcher(0, (entries) => writes.push(entries.map((e) => e.seq)))
    b.add([entry(1), entry(2)])
    b.add([entry(3)])
    expect(writes).toEqual([[1, 2], [3]])
  })

  it('writes the first batch after a quiet interval at once and holds the next ones for one write, in order', async () => {
    const writes: number[][] = []
    // Long enough that the three synchronous adds below cannot straddle it on a loaded machine.
    const b = new LiveBatcher(1_000, (entries) => writes.push(entries.map((e) => e.seq)))
    b.add([entry(1)])
    expect(writes).toEqual([[1]])
    b.add([entry(2), entry(3)])
    b.add([entry(4)])
    expect(writes).toEqual([[1]]) // held, synchronously
    await waitUntil(() => writes.length === 2, 'the held batch', 10_000)
    expect(writes).toEqual([[1], [2, 3, 4]])
    b.clear()
  })

  it('drops what it holds on clear', () => {
    const writes: number[][] = []
    const b = new LiveBatcher(60_000, (entries) => writes.push(entries.map((e) => e.seq)))
    b.add([entry(1)])
    b.add([entry(2)])
    b.clear()
    expect(writes).toEqual([[1]])
  })
})
