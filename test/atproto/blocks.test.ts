import { describe, expect, it } from 'vitest'
import { BlockMap } from '../../src/atproto/blocks.js'
import { cidForCbor } from '../../src/atproto/cid.js'

/** A copy of `cid` with one byte changed before its last four (same bucket key, different CID). */
function sameSuffix(cid: Uint8Array, at: number): Uint8Array {
  const other = new Uint8Array(cid)
  other[at] = other[at]! ^ 0xff
  return other
}

describe('BlockMap', () => {
  const a = cidForCbor(new Uint8Array([0xa0]))
  const b = sameSuffix(a, 10)
  const c = sameSuffix(a, 20)
  const block = (n: number) => new Uint8Array([n])

  it('keeps CIDs that share their last bytes apart, looked up by equal copies', () => {
    const map = new BlockMap()
    map.set(a, block(1))
    map.set(b, block(2))
    map.set(c, block(3))
    expect(map.size).toBe(3)
    expect(map.get(new Uint8Array(a))).toEqual(block(1))
    expect(map.get(new Uint8Array(b))).toEqual(block(2))
    expect(map.get(new Uint8Array(c))).toEqual(block(3))
    expect(map.has(sameSuffix(a, 30))).toBe(false)
    expect(map.get(a.subarray(0, 35))).toBeUndefined()
    expect([...map.entries()].map(([, bytes]) => bytes[0]).sort()).toEqual([1, 2, 3])
  })

  it('replaces on a second set and deletes from the middle, head and tail of a chain', () => {
    const map = new BlockMap()
    for (const [i, cid] of [a, b, c].entries()) map.set(cid, block(i))
    map.set(new Uint8Array(b), block(9))
    expect(map.size).toBe(3)
    expect(map.get(b)).toEqual(block(9))
    expect(map.delete(b)).toBe(true)
    expect(map.delete(b)).toBe(false)
    expect(map.has(a) && map.has(c)).toBe(true)
    expect(map.delete(c)).toBe(true)
    expect(map.delete(a)).toBe(true)
    expect(map.size).toBe(0)
    expect([...map.entries()]).toEqual([])
  })

  it('accepts CIDs shorter than the bucket key', () => {
    const map = new BlockMap()
    map.set(new Uint8Array([1, 2]), block(1))
    map.set(new Uint8Array(0), block(2))
    expect(map.get(new Uint8Array([1, 2]))).toEqual(block(1))
    expect(map.get(new Uint8Array(0))).toEqual(block(2))
    expect(map.get(new Uint8Array([0, 1, 2]))).toBeUndefined()
  })
})
