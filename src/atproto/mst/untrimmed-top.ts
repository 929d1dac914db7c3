/**
 * Untrimmed tops: the one non-canonical shape the reference PDS (@atproto/repo) leaves.
 *
 * When @atproto/repo empties a tree whose root's layer L it knows in memory (a create
 * computed it, or a delete trimmed the root to a child decoded at its layer), the empty root
 * keeps L; a later create of a key of height h < L, in the same batch of writes or (where the
 * tree stays in memory) a later commit, then hangs the key below L − h pointer-only nodes
 * (`{e: [], l: child}`) instead of making its node the root. Below that chain the tree is
 * canonical. Loading the stored root keeps the chain (its layer is the child's + 1) and later
 * creates keep it; the next delete trims it (atproto packages/repo/src/mst/mst.ts: getLayer,
 * add, trimTop).
 *
 * So such a tree is a canonical tree plus 0 or more pointer-only nodes on top, and which
 * number cannot be told from the commit that follows: inverting that commit gives the
 * canonical tree, and its `prevData` may name it under any number of such nodes. load.ts
 * opens these roots; `untrimmedTopIs` recognises them as a previous root.
 */
import { sha256SmallWords } from './sha256-small.js'
import { encodeNodeScratch } from './node-codec.js'

/**
 * Highest layer accepted for a pointer-only root. The chain's top is the layer of a key the
 * repo once held, and a key sits above layer 32 with probability 4^-33 (about 10^-20), so
 * this refuses nothing a real repo holds and bounds the work a hostile chain or prevData
 * can cause (one sha256 of a 47-byte node per layer).
 */
export const MAX_UNTRIMMED_TOP_LAYER = 32

const DAG_CBOR_SHA256 = [0x01, 0x71, 0x12, 0x20]

const noKeys: Uint8Array[] = []
const kid: Uint8Array[] = [new Uint8Array(36)]

/**
 * Whether `expected` is the CID of the node `core` (at `coreLayer`, with entries) under one
 * or more pointer-only nodes, the top one at most at MAX_UNTRIMMED_TOP_LAYER.
 */
export function untrimmedTopIs(core: Uint8Array, coreLayer: number, expected: Uint8Array): boolean {
  if (core.length !== 36 || expected.length !== 36) return false
  for (let i = 0; i < 4; i++) if (expected[i] !== DAG_CBOR_SHA256[i]) return false
  const link = kid[0]!
  link.set(core)
  for (let layer = coreLayer + 1; layer <= MAX_UNTRIMMED_TOP_LAYER; layer++) {
    const block = encodeNodeScratch(noKeys, noKeys, kid)
    const words = sha256SmallWords(block)
    let same = true
    for (let w = 0; w < 8; w++) {
      const word = words[w]!
      const at = 4 + w * 4
      link[at] = word >>> 24
      link[at + 1] = (word >>> 16) & 0xff
      link[at + 2] = (word >>> 8) & 0xff
      link[at + 3] = word & 0xff
      for (let j = at; j < at + 4; j++) if (expected[j] !== link[j]) same = false
    }
    if (same) return true
  }
  return false
}
