/**
 * A mutable, lazily loaded MST over a block map. Nodes not yet opened are CID
 * stubs; opening one whose block is absent throws `missing-block`, so a tree
 * loaded from a CAR slice works as long as the operations stay inside it.
 *
 * Blocks are trusted to hash to their CIDs (the caller verifies every CAR
 * block), so an unmodified node keeps the CID it was loaded under and is never
 * re-encoded. A loaded node stays in its scanned form (offsets into its block)
 * until its entries change; if only its children's CIDs change, its new
 * encoding is its old block with those digests patched in.
 */
import { bytesEqual, cidForCbor } from '../cid.js'
import type { BlockMap, ReadonlyBlockMap } from '../blocks.js'
import { MstError } from './errors.js'
import { keyHeight, keyHeightAt, lowerBound } from './key.js'
import {
  EMPTY_NODE_BYTES,
  ENT,
  encodeNode,
  encodeNodeScratch,
  layoutFind,
  layoutKeys,
  layoutKid,
  layoutKidDigest,
  layoutValue,
  scanNode,
  type NodeLayout,
} from './node-codec.js'

/** An opened node, or the CID of one not opened yet, or nothing. */
export type Link = MstNode | Uint8Array | null

interface Arrays {
  keys: Uint8Array[]
  vals: Uint8Array[]
  /** `kids.length === keys.length + 1`; `kids[0]` is the left subtree. */
  kids: Link[]
}

export class MstNode {
  /** CID of the node as stored; null while the node differs from any stored block. */
  cid: Uint8Array | null
  /** Set while entries and child positions are exactly as in the stored block. */
  private layout: NodeLayout | null
  /** Children opened while still in scanned form, by position. */
  private opened: (MstNode | undefined)[] | null = null
  private arrays: Arrays | null

  private constructor(
    readonly layer: number,
    layout: NodeLayout | null,
    arrays: Arrays | null,
    cid: Uint8Array | null,
  ) {
    this.layout = layout
    this.arrays = arrays
    this.cid = cid
  }

  static fromBlock(layer: number, layout: NodeLayout, cid: Uint8Array): MstNode {
    return new MstNode(layer, layout, null, cid)
  }

  static build(layer: number, keys: Uint8Array[], vals: Uint8Array[], kids: Link[]): MstNode {
    return new MstNode(layer, null, { keys, vals, kids }, null)
  }

  get size(): number {
    return this.layout !== null ? this.layout.count : this.arrays!.keys.length
  }

  isEmpty(): boolean {
    return this.size === 0 && this.kid(0) === null
  }

  /** `(index << 1) | found`: index of the first key >= `key`. */
  find(key: Uint8Array): number {
    if (this.layout !== null) return layoutFind(this.layout, key)
    const keys = this.arrays!.keys
    const i = lowerBound(keys, key)
    return (i << 1) | (i < keys.length && bytesEqual(keys[i]!, key) ? 1 : 0)
  }

  value(i: number): Uint8Array {
    return this.layout !== null ? layoutValue(this.layout, i) : this.arrays!.vals[i]!
  }

  kid(i: number): Link {
    if (this.layout !== null) return this.opened?.[i] ?? layoutKid(this.layout, i)
    return this.arrays!.kids[i]!
  }

  /** Record that child i (a stub) was opened as `node`; the tree is unchanged. */
  setOpened(i: number, node: MstNode): void {
    if (this.layout !== null) {
      this.opened ??= []
      this.opened[i] = node
    }
    if (this.arrays !== null) this.arrays.kids[i] = node
  }

  /** A descendant changed: this node's CID must be recomputed. */
  touch(): void {
    this.cid = null
  }

  /** Entries as arrays, for reading (built once from the block). */
  read(): Arrays {
    if (this.arrays === null) {
      const layout = this.layout!
      const n = layout.count
      const vals = new Array<Uint8Array>(n)
      const kids = new Array<Link>(n + 1)
      for (let i = 0; i < n; i++) vals[i] = layoutValue(layout, i)
      for (let i = 0; i <= n; i++) kids[i] = this.opened?.[i] ?? layoutKid(layout, i)
      this.arrays = { keys: layoutKeys(layout), vals, kids }
    }
    return this.arrays
  }

  /** Entries as arrays, to change them: the node leaves its stored form. */
  edit(): Arrays {
    const arrays = this.read()
    this.layout = null
    this.opened = null
    this.cid = null
    return arrays
  }

  /** CID, encoding this node and changed descendants; new blocks go to `collect`. */
  computeCid(collect?: BlockMap): Uint8Array {
    if (this.cid !== null) return this.cid
    let bytes: Uint8Array
    const layout = this.layout
    if (layout !== null) {
      // Same shape as stored: patch the digests of children that changed.
      // Children first: they use the same scratch buffer.
      const opened = this.opened ?? []
      const kidCids = opened.map((kid) => kid?.computeCid(collect))
      bytes = patchScratch(layout.block)
      for (let i = 0; i < kidCids.length; i++) {
        const kidCid = kidCids[i]
        if (kidCid === undefined) continue
        const at = layoutKidDigest(layout, i)
        for (let j = 0; j < 32; j++) bytes[at + j] = kidCid[4 + j]!
      }
      if (collect !== undefined) bytes = bytes.slice()
    } else {
      const { keys, vals, kids } = this.arrays!
      const kidCids = kids.map((kid) => (kid === null ? null : kid instanceof MstNode ? kid.computeCid(collect) : kid))
      bytes = collect === undefined ? encodeNodeScratch(keys, vals, kidCids) : encodeNode(keys, vals, kidCids)
    }
    const cid = cidForCbor(bytes)
    this.cid = cid
    collect?.set(cid, bytes)
    return cid
  }
}

let patchBuffer = new Uint8Array(16 * 1024)
function patchScratch(block: Uint8Array): Uint8Array {
  if (patchBuffer.length < block.length) patchBuffer = new Uint8Array(Math.max(block.length, patchBuffer.length * 2))
  patchBuffer.set(block)
  return patchBuffer.subarray(0, block.length)
}

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

function badMst(why: string): never {
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

/** Read and validate a root node; null for the empty tree. */
export function loadRoot(blocks: ReadonlyBlockMap, cid: Uint8Array, opts?: MstLoadOptions): MstNode | null {
  const layout = scanBlock(blocks, cid, 'root')
  if (layout.count === 0) {
    if (layout.left < 0) return null
    badMst('root node has no entries (untrimmed top)')
  }
  const layer = firstKeyHeight(layout)
  checkLayout(layout, layer, opts?.checkAllKeyHeights === true, true)
  return MstNode.fromBlock(layer, layout, cid)
}

export class MstTree {
  /** Null for the empty tree. */
  root: MstNode | null
  private readonly blocks: ReadonlyBlockMap
  private readonly opts: MstLoadOptions | undefined

  private constructor(blocks: ReadonlyBlockMap, root: MstNode | null, opts?: MstLoadOptions) {
    this.blocks = blocks
    this.root = root
    this.opts = opts
  }

  static load(root: Uint8Array, blocks: ReadonlyBlockMap, opts?: MstLoadOptions): MstTree {
    return new MstTree(blocks, loadRoot(blocks, root, opts), opts)
  }

  static empty(blocks: ReadonlyBlockMap): MstTree {
    return new MstTree(blocks, null)
  }

  private open(link: MstNode | Uint8Array, layer: number): MstNode {
    return link instanceof MstNode ? link : loadNode(this.blocks, link, layer, this.opts)
  }

  /** Open child i of `node`, remembering the opened node (so later operations on the tree do not scan it again). */
  child(node: MstNode, i: number): MstNode | null {
    const kid = node.kid(i)
    if (kid === null) return null
    if (kid instanceof MstNode) return kid
    const opened = loadNode(this.blocks, kid, node.layer - 1, this.opts)
    node.setOpened(i, opened)
    return opened
  }

  /** Value CID stored at `key` (a view), or null. */
  get(key: Uint8Array): Uint8Array | null {
    let node = this.root
    while (node !== null) {
      const f = node.find(key)
      if (f & 1) return node.value(f >> 1)
      node = this.child(node, f >> 1)
    }
    return null
  }

  /** Set `key` → `val`; returns the value it replaced, or null if the key was new. */
  put(key: Uint8Array, val: Uint8Array): Uint8Array | null {
    const height = keyHeight(key)
    let root = this.root
    if (root === null) {
      this.root = MstNode.build(height, [key], [val], [null, null])
      return null
    }
    if (height > root.layer) {
      // New top layers: each starts with the old root as its left subtree; the
      // insert at `height` then splits that chain around the key.
      while (root.layer < height) root = MstNode.build(root.layer + 1, [], [], [root])
      this.root = root
    }
    return this.putIn(root, key, val, height)
  }

  private putIn(node: MstNode, key: Uint8Array, val: Uint8Array, height: number): Uint8Array | null {
    const f = node.find(key)
    const i = f >> 1
    if (node.layer === height) {
      if (f & 1) {
        const old = node.value(i)
        node.edit().vals[i] = val
        return old
      }
      const [left, right] = this.split(node.kid(i), key, node.layer - 1)
      const { keys, vals, kids } = node.edit()
      keys.splice(i, 0, key)
      vals.splice(i, 0, val)
      kids.splice(i, 1, left, right)
      return null
    }
    if (f & 1) badMst('key found on the wrong layer')
    const child = this.child(node, i)
    if (child === null) {
      node.edit().kids[i] = chain(node.layer - 1, key, val, height)
      return null
    }
    const old = this.putIn(child, key, val, height)
    node.touch()
    return old
  }

  /**
   * Split the subtree at `link` (on `layer`) around `key`, which it must not
   * contain: returns the parts below and above the key. Parts that do not
   * change are returned as the same link, keeping their CIDs.
   */
  private split(link: Link, key: Uint8Array, layer: number): [Link, Link] {
    if (link === null) return [null, null]
    const node = this.open(link, layer)
    const n = node.size
    const f = node.find(key)
    const i = f >> 1
    if (f & 1) badMst('key found on the wrong layer')
    const below = this.child(node, i)
    const [l, r] = this.split(below, key, layer - 1)
    if (r === null && i === n && l === below) return [node, null]
    if (l === null && i === 0 && r === below) return [null, node]
    const { keys, vals, kids } = node.read()
    const leftKids = kids.slice(0, i)
    leftKids.push(l)
    const left = MstNode.build(layer, keys.slice(0, i), vals.slice(0, i), leftKids)
    const rightKids = kids.slice(i)
    rightKids[0] = r
    const right = MstNode.build(layer, keys.slice(i), vals.slice(i), rightKids)
    return [left.isEmpty() ? null : left, right.isEmpty() ? null : right]
  }

  /** Remove `key`; returns the value it had, or null if it was absent. */
  remove(key: Uint8Array): Uint8Array | null {
    const root = this.root
    if (root === null) return null
    const height = keyHeight(key)
    if (height > root.layer) return null
    const old = this.removeIn(root, key, height)
    if (old === null) return null
    // Trim empty nodes from the top: the root is never an entry-less node.
    let top: MstNode | null = root
    while (top !== null && top.size === 0) top = this.child(top, 0)
    this.root = top
    return old
  }

  private removeIn(node: MstNode, key: Uint8Array, height: number): Uint8Array | null {
    const f = node.find(key)
    const i = f >> 1
    if (node.layer === height) {
      if (!(f & 1)) return null
      const old = node.value(i)
      const merged = this.merge(node.kid(i), node.kid(i + 1), node.layer - 1)
      const { keys, vals, kids } = node.edit()
      keys.splice(i, 1)
      vals.splice(i, 1)
      kids.splice(i, 2, merged)
      return old
    }
    if (f & 1) badMst('key found on the wrong layer')
    const child = this.child(node, i)
    if (child === null) return null
    const old = this.removeIn(child, key, height)
    if (old === null) return null
    // Trim from the bottom: a subtree left with nothing at all disappears.
    if (child.isEmpty()) node.edit().kids[i] = null
    else node.touch()
    return old
  }

  /** Join two adjacent subtrees on `layer` (every key of `a` sorts before `b`). */
  private merge(a: Link, b: Link, layer: number): Link {
    if (a === null) return b
    if (b === null) return a
    const left = this.open(a, layer)
    const right = this.open(b, layer)
    const mid = this.merge(this.child(left, left.size), this.child(right, 0), layer - 1)
    const L = left.read()
    const R = right.read()
    const kids = L.kids.slice(0, -1)
    kids.push(mid)
    for (let i = 1; i < R.kids.length; i++) kids.push(R.kids[i]!)
    return MstNode.build(layer, L.keys.concat(R.keys), L.vals.concat(R.vals), kids)
  }

  /**
   * Root CID of the tree, encoding every changed node canonically. Each newly
   * encoded block is added to `collect` when given.
   */
  rootCid(collect?: BlockMap): Uint8Array {
    if (this.root === null) {
      const cid = emptyRootCid()
      collect?.set(cid, EMPTY_NODE_BYTES.slice())
      return cid
    }
    return this.root.computeCid(collect)
  }

  /** Every (key, value) in key order. Opens the whole tree. */
  *entries(): Generator<[Uint8Array, Uint8Array]> {
    if (this.root !== null) yield* this.walk(this.root)
  }

  private *walk(node: MstNode): Generator<[Uint8Array, Uint8Array]> {
    const n = node.size
    for (let i = 0; i <= n; i++) {
      const kid = this.child(node, i)
      if (kid !== null) yield* this.walk(kid)
      if (i < n) yield [node.read().keys[i]!, node.value(i)]
    }
  }
}

function chain(layer: number, key: Uint8Array, val: Uint8Array, height: number): MstNode {
  // Links never skip a layer: empty intermediate nodes down to the key's layer.
  if (layer === height) return MstNode.build(layer, [key], [val], [null, null])
  return MstNode.build(layer, [], [], [chain(layer - 1, key, val, height)])
}
