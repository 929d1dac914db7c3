import { copyBytes } from '../cid.js'
import type { ReadonlyBlockMap } from '../blocks.js'
import { keyBytes } from './key.js'
import { loadNode, loadRoot, type MstLoadOptions } from './load.js'

/**
 * Value CID stored at `key` in the tree rooted at `root` (a fresh copy), or
 * null if the key is absent. Only the nodes on the key's path are decoded;
 * throws MstError('missing-block') if that path needs a block not in `blocks`,
 * MstError('bad-mst') if a node on it is malformed.
 */
export function mstLookup(
  root: Uint8Array,
  blocks: ReadonlyBlockMap,
  key: string | Uint8Array,
  opts?: MstLoadOptions,
): Uint8Array | null {
  const k = keyBytes(key)
  let node = loadRoot(blocks, root, opts)
  while (node !== null) {
    const f = node.find(k)
    if (f & 1) return copyBytes(node.value(f >> 1))
    const kid = node.kid(f >> 1)
    if (kid === null) return null
    node = loadNode(blocks, kid as Uint8Array, node.layer - 1, opts)
  }
  return null
}
