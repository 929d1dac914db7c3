import { describe, expect, it } from 'vitest'
import { FrameRing, type RingEntry } from '../../src/firehose/ring.js'

function entry(seq: number, bytes: number, accountId = 1): RingEntry {
  return { seq, accountId, wire: Buffer.alloc(bytes, seq & 0xff), removed: false }
}

function seqs(ring: FrameRing): number[] {
  const out: number[] = []
  for (let i = 0; i < ring.end(); i++) {
    const e = ring.at(i)
    if (e !== undefined) out.push(e.seq)
  }
  return out
}

describe('FrameRing', () => {
  it('evicts the oldest entries by count', () => {
    const ring = new FrameRing(3, 1 << 20)
    for (let s = 11; s <= 15; s++) ring.push(entry(s, 10))
    expect(seqs(ring)).toEqual([13, 14, 15])
    expect(ring.size).toBe(3)
    expect(ring.bytes).toBe(30)
    expect(ring.floor).toBe(12)
    expect(ring.at(ring.indexAfter(13))?.seq).toBe(14)
    expect(ring.indexAfter(12)).toBe(ring.end() - 3)
  })

  it('evicts the oldest entries by bytes, keeping every seq above the floor', () => {
    const ring = new FrameRing(100, 250)
    ring.push(entry(1, 100))
    ring.push(entry(2, 100))
    expect(ring.floor).toBe(0)
    expect(ring.bytes).toBe(200)
    ring.push(entry(3, 100)) // 300 > 250: seq 1 goes
    expect(seqs(ring)).toEqual([2, 3])
    expect(ring.floor).toBe(1)
    expect(ring.bytes).toBe(200)
    ring.push(entry(4, 200)) // 400: seqs 2 and 3 go
    expect(seqs(ring)).toEqual([4])
    expect(ring.floor).toBe(3)
    expect(ring.at(ring.end() - 2)).toBeUndefined()
    expect(ring.indexAfter(0)).toBe(ring.end() - 1)
  })

  it('keeps the newest entry even when it alone exceeds the byte bound', () => {
    const ring = new FrameRing(10, 50)
    ring.push(entry(7, 20))
    ring.push(entry(8, 80))
    expect(seqs(ring)).toEqual([8])
    expect(ring.floor).toBe(7)
    expect(ring.bytes).toBe(80)
    ring.push(entry(9, 10)) // 90 > 50: the big one goes, the newest stays
    expect(seqs(ring)).toEqual([9])
    expect(ring.floor).toBe(8)
  })

  it('marks only held entries of an account removed', () => {
    const ring = new FrameRing(4, 35)
    for (let s = 1; s <= 5; s++) ring.push(entry(s, 10, s % 2))
    expect(seqs(ring)).toEqual([3, 4, 5])
    expect(ring.removeAccount(1)).toBe(2) // seqs 3 and 5; seq 1 was evicted
    expect(ring.at(ring.end() - 1)?.removed).toBe(true)
    expect(ring.at(ring.end() - 2)?.removed).toBe(false)
  })

  it('rejects bad bounds', () => {
    expect(() => new FrameRing(0)).toThrow(RangeError)
    expect(() => new FrameRing(10, 0)).toThrow(RangeError)
  })
})
