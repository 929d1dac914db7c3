import { BytesWrapper, CidLinkWrapper } from '@atcute/cbor'
import { describe, expect, it } from 'vitest'
import { readCarSlice } from '../../src/atproto/car.js'
import { cidEquals, cidForCbor, cidMatchesBlock } from '../../src/atproto/cid.js'
import { CarError } from '../../src/atproto/errors.js'
import { writeCar } from './support/events.js'
import { INDIGO_COMMITS, indigoCommitBody } from './support/fixtures.js'

function carError(fn: () => unknown): CarError {
  try {
    fn()
  } catch (err) {
    if (err instanceof CarError) return err
    throw err
  }
  throw new Error('expected a CarError')
}

describe('readCarSlice', () => {
  it('reads the real firehose CAR slices: root is the commit, every block hash-checked', () => {
    for (const path of INDIGO_COMMITS) {
      const body = indigoCommitBody(path)
      const car = (body.blocks as BytesWrapper).buf
      const slice = readCarSlice(car)
      expect(slice.roots.length).toBe(1)
      expect(cidEquals(slice.roots[0], (body.commit as CidLinkWrapper).bytes)).toBe(true)
      expect(slice.blocks.size).toBeGreaterThan(1)
      for (const [cid, bytes] of slice.blocks.entries()) expect(cidMatchesBlock(cid, bytes)).toBe(true)
      expect(slice.blocks.has(slice.roots[0]!)).toBe(true)
      // zero-copy: blocks are views into the CAR buffer
      const [, first] = slice.blocks.entries().next().value!
      expect(first.buffer).toBe(car.buffer)
    }
  })

  it('rejects a block whose bytes do not hash to its CID', () => {
    const block = new Uint8Array([0xa1, 0x61, 0x61, 0x01])
    const cid = cidForCbor(block)
    expect(readCarSlice(writeCar([cid], [[cid, block]])).blocks.size).toBe(1)
    const flipped = new Uint8Array(block)
    flipped[3] = 0x02
    expect(carError(() => readCarSlice(writeCar([cid], [[cid, flipped]]))).reason).toBe('bad-block-hash')
  })

  it('rejects garbage, truncation and non-atproto CIDs as bad-car', () => {
    const block = new Uint8Array([0xa1, 0x61, 0x61, 0x01])
    const cid = cidForCbor(block)
    const car = writeCar([cid], [[cid, block]])
    expect(carError(() => readCarSlice(new Uint8Array([1, 2, 3]))).reason).toBe('bad-car')
    expect(carError(() => readCarSlice(new Uint8Array(0))).reason).toBe('bad-car')
    expect(carError(() => readCarSlice(car.subarray(0, car.length - 2))).reason).toBe('bad-car')
    // sha-512 multihash code instead of sha2-256
    const odd = new Uint8Array(cid)
    odd[2] = 0x13
    expect(carError(() => readCarSlice(writeCar([cid], [[odd, block]]))).reason).toBe('bad-car')
    // trailing garbage after the last block
    expect(carError(() => readCarSlice(new Uint8Array([...car, 0x05, 0x01]))).reason).toBe('bad-car')
  })

  it('tolerates duplicate and unreferenced blocks', () => {
    const a = new Uint8Array([0xa1, 0x61, 0x61, 0x01])
    const b = new Uint8Array([0xa1, 0x61, 0x62, 0x02])
    const slice = readCarSlice(writeCar([cidForCbor(a)], [[cidForCbor(a), a], [cidForCbor(b), b], [cidForCbor(a), a]]))
    expect(slice.blocks.size).toBe(2)
  })
})
