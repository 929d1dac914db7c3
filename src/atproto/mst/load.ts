/**
 * Reading MST nodes out of a block map and checking their shape (layers, child links,
 * the root's layer) before a tree uses them.
 */
import { cidForCbor } from '../cid.js'
import type { ReadonlyBlockMap } from '../blocks.js'
import { MstError } from './errors.js'
import { keyHeight, keyHeightAt } from './key.js'
import { EMPTY_NODE_BYTES, ENT, layoutKeys, layoutKid, scanNode, type NodeLayout } from './node-codec.js'
import { MstNode } from './node.js'
import { MAX_UNTRIMMED_TOP_LAYER } from './untrimmed-top.js'

export interface MstLoadOptions {
  /**
   * Check the layer of every key in every opened node. By default only the
   * first key of each node is hashed (one sha256 per node): that fixes the
   * node's layer, and together with the structural checks is enough on the
   * hot path, where inversion against the previous root catches the rest.
   */
  checkAllKeyHeights?: boolean
}

let emptyNodeCid: Uint8Array | null = null
/** CID of the canonical empty node (the data root of an empty repo). */
export function emptyRootCid(): Uint8Array {
  emptyNodeCid ??= cidForCbor(EMPTY_NODE_BYTES)
  return new Uint8Array(emptyNodeCid)
}

/** A tree that breaks the MST's rules. */
export function badMst(why: string): never {
  throw new MstError('bad-mst', why)
}

/** The layer of the node's first key (stored whole: its prefix length is 0). */
function firstKeyHeight(layout: NodeLayout): number {
  return keyHeightAt(layout.block, layout.ent[0]!, layout.ent[1]!)
}

/**
 * No child links below layer 0, and the first key (or, with `all`, every key)
 * on `layer`. `firstChecked`: the first key's height is already known to match.
 */
function checkLayout(layout: NodeLayout, layer: number, all: boolean, firstChecked: boolean): void {
  const n = layout.count
  if (layer === 0) {
    if (layout.left >= 0) badMst('child link below layer 0')
    for (let i = 0; i < n; i++) if (layout.ent[i * ENT + 3]! >= 0) badMst('child link below layer 0')
  }
  if (n === 0) return
  if (all) {
    for (const key of layoutKeys(layout)) {
      const h = keyHeight(key)
      if (h !== layer) badMst(`key at height ${h} in a node at layer ${layer}`)
    }
  } else if (!firstChecked) {
    const h = firstKeyHeight(layout)
    if (h !== layer) badMst(`key at height ${h} in a node at layer ${layer}`)
  }
}

function scanBlock(blocks: ReadonlyBlockMap, cid: Uint8Array, what: string): NodeLayout {
  const block = blocks.get(cid)
  if (block === undefined) throw new MstError('missing-block', `MST ${what} block not available`)
  return scanNode(block)
}

/** Read and validate a non-root node expected at `layer`. */
export function loadNode(blocks: ReadonlyBlockMap, cid: Uint8Array, layer: number, opts?: MstLoadOptions): MstNode {
  if (layer < 0) badMst('tree deeper than its root layer allows')
  const layout = scanBlock(blocks, cid, 'node')
  if (layout.count === 0 && layout.left < 0) badMst('empty non-root node')
  checkLayout(layout, layer, opts?.checkAllKeyHeights === true, false)
  return MstNode.fromBlock(layer, layout, cid)
}

/**
 * Layer of a pointer-only root (an untrimmed top, see untrimmed-top.ts): one above its
 * child's, found by following pointer-only nodes down to the first node with entries. The
 * nodes on the way are checked again when the tree opens them, at the layers this implies.
 */
function untrimmedRootLayer(blocks: ReadonlyBlockMap, root: NodeLayout): number {
  let link = layoutKid(root, 0)!
  for (let above = 1; above <= MAX_UNTRIMMED_TOP_LAYER; above++) {
    const layout = scanBlock(blocks, link, 'node')
    if (layout.count > 0) {
      const layer = firstKeyHeight(layout) + above
      if (layer > MAX_UNTRIMMED_TOP_LAYER) break
      return layer
    }
    if (layout.left < 0) badMst('empty non-root node')
    link = layoutKid(layout, 0)!
  }
  badMst(`untrimmed root above layer ${MAX_UNTRIMMED_TOP_LAYER}`)
}

/** Read and validate a root node; null for the empty tree. */
export function loadRoot(blocks: ReadonlyBlockMap, cid: Uint8Array, opts?: MstLoadOptions): MstNode | null {
  const layout = scanBlock(blocks, cid, 'root')
  if (layout.count === 0) {
    if (layout.left < 0) return null
    return MstNode.fromBlock(untrimmedRootLayer(blocks, layout), layout, cid)
  }
  const layer = firstKeyHeight(layout)
  checkLayout(layout, layer, opts?.checkAllKeyHeights === true, true)
  return MstNode.fromBlock(layer, layout, cid)
}
