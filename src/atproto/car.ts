/**
 * CAR v1 slices in the atproto profile (PROTOCOL.md §3.8, §3.9): CIDv1,
 * sha2-256, dag-cbor or raw. Every block is hashed and compared with its CID
 * before anything uses it.
 *
 * Zero-copy: the returned CIDs and block bytes are views into `bytes`, so they
 * pin the whole frame buffer. Callers copy (copyBytes) anything they keep
 * beyond the event.
 */
import { fromUint8Array } from '@atcute/car'
import { CidLinkWrapper } from '@atcute/cbor'
import { BlockMap } from './blocks.js'
import { CborLimitError, checkItem } from './cbor-scan.js'
import { cidMatchesBlock, cidToString } from './cid.js'
import { CarError } from './errors.js'
import { BLOCK_LIMITS } from './limits.js'

export interface CarSlice {
  /** Root CIDs as binary CID bytes (views). */
  roots: Uint8Array[]
  /** Every block, keyed by binary CID, hash-verified. Duplicates collapse. */
  blocks: BlockMap
}

/** Unsigned LEB128 at `pos` (at most 7 bytes, well inside the safe range): [value, next], or null. */
function readVarint(bytes: Uint8Array, pos: number): [number, number] | null {
  let value = 0
  for (let i = 0; i < 7; i++) {
    const b = bytes[pos + i]
    if (b === undefined) return null
    value += (b & 0x7f) * 2 ** (7 * i)
    if (b < 0x80) return [value, pos + i + 1]
  }
  return null
}

/**
 * The CAR header is the one generic CBOR decode in a CAR (blocks are hashed,
 * not decoded): check it against BLOCK_LIMITS before `@atcute/car` decodes it.
 */
function checkHeader(bytes: Uint8Array): void {
  const length = readVarint(bytes, 0)
  if (length === null || length[0] === 0 || length[1] + length[0] > bytes.length) throw new CarError('bad-car', 'invalid CAR header length')
  const header = bytes.subarray(length[1], length[1] + length[0])
  try {
    if (checkItem(header, 0, BLOCK_LIMITS, 'CAR header') !== header.length) throw new Error('trailing bytes in CAR header')
  } catch (err) {
    if (err instanceof CborLimitError) throw err
    throw new CarError('bad-car', `invalid CAR: ${(err as Error).message}`)
  }
}

/** Parses and hash-checks a CAR. Throws CarError, or CborLimitError for a header over the decode limits. */
export function readCarSlice(bytes: Uint8Array): CarSlice {
  let roots: Uint8Array[]
  const blocks = new BlockMap()
  checkHeader(bytes)
  try {
    const reader = fromUint8Array(bytes)
    roots = reader.roots.map((root) => {
      // Roots decoded from CBOR are always wrappers around the binary CID.
      if (!(root instanceof CidLinkWrapper)) throw new CarError('bad-car', 'CAR root is not a CID link')
      return root.bytes
    })
    for (const entry of reader) {
      const cid = entry.cid.bytes
      if (!cidMatchesBlock(cid, entry.bytes)) {
        throw new CarError('bad-block-hash', `block ${cidToString(cid)} does not hash to its CID`)
      }
      blocks.set(cid, entry.bytes)
    }
  } catch (err) {
    if (err instanceof CarError) throw err
    throw new CarError('bad-car', `invalid CAR: ${(err as Error).message}`)
  }
  return { roots, blocks }
}
