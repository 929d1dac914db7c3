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
import { cidMatchesBlock, cidToString } from './cid.js'
import { CarError } from './errors.js'

export interface CarSlice {
  /** Root CIDs as binary CID bytes (views). */
  roots: Uint8Array[]
  /** Every block, keyed by binary CID, hash-verified. Duplicates collapse. */
  blocks: BlockMap
}

export function readCarSlice(bytes: Uint8Array): CarSlice {
  let roots: Uint8Array[]
  const blocks = new BlockMap()
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
