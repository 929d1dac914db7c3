/**
 * A mutable, lazily loaded MST over a block map. Nodes not yet opened are CID
 * stubs; opening one whose block is absent throws `missing-block`, so a tree
 * loaded from a CAR slice works as long as the operations stay inside it.
 *
 * Blocks are trusted to hash to their CIDs (the caller verifies every CAR
 * block), so an unmodified node keeps the CID it was loaded under and is never
 * re-encoded.
 */
import { cidForCbor } from '../cid.js'
import type { BlockMap, ReadonlyBlockMap } from '../blocks.js'
import { MstError } from './errors.js'
import { keyHeight, keysEqual, lowerBound } from './key.js'
import { decodeNode, encodeNode, encodeNodeScratch, EMPTY_NODE_BYTES } from './node-codec.js'

/** An opened node, or the CID of one not opened yet, or nothing. */
export type Link = MstNode | Uint8Array | null

export class MstNode {
  constructor(
    readonly layer: number,
    public keys: Uint8Array[],
    public vals: Uint8Array[],
    /** `kids.length === keys.length + 1`; `kids[0]` is the left subtree. */
    public kids: Link[],
    /** CID of the node as stored; null while the node differs from any stored block. */
    public cid: Uint8Array | null,
  ) {}

  isEmpty(): boolean {
    return this.keys.length === 0 && this.kids[0] === null
  }
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

function checkLayer(keys: Uint8Array[], layer: number, all: boolean): void {
  const n = all ? keys.length : Math.min(1, keys.length)
  for (let i = 0; i < n; i++) {
    if (keyHeight(keys[i]!) !== layer) badMst(`key at height ${keyHeight(keys[i]!)} in a node at layer ${layer}`)
  }
}

/** Read and validate a non-root node expected at `layer`. */
export function loadNode(blocks: ReadonlyBlockMap, cid: Uint8Array, layer: number, opts?: MstLoadOptions): MstNode {
  const block = blocks.get(cid)
  if (block === undefined) throw new MstError('missing-block', 'MST node block not available')
  const data = decodeNode(block)
  if (layer < 0) badMst('tree deeper than its root layer allows')
  if (data.keys.length === 0 && data.kids[0] === null) badMst('empty non-root node')
  if (layer === 0) {
    for (const kid of data.kids) if (kid !== null) badMst('child link below layer 0')
  }
  checkLayer(data.keys, layer, opts?.checkAllKeyHeights === true)
  return new MstNode(layer, data.keys, data.vals, data.kids, cid)
}

/** Read and validate a root node; null for the empty tree. */
export function loadRoot(blocks: ReadonlyBlockMap, cid: Uint8Array, opts?: MstLoadOptions): MstNode | null {
  const block = blocks.get(cid)
  if (block === undefined) throw new MstError('missing-block', 'MST root block not available')
  const data = decodeNode(block)
  if (data.keys.length === 0) {
    if (data.kids[0] === null) return null
    badMst('root node has no entries (untrimmed top)')
  }
  const layer = keyHeight(data.keys[0]!)
  if (layer === 0) {
    for (const kid of data.kids) if (kid !== null) badMst('child link below layer 0')
  }
  if (opts?.checkAllKeyHeights === true) checkLayer(data.keys, layer, true)
  return new MstNode(layer, data.keys, data.vals, data.kids, cid)
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

  /** Value CID stored at `key` (a view), or null. */
  get(key: Uint8Array): Uint8Array | null {
    let node = this.root
    while (node !== null) {
      const i = lowerBound(node.keys, key)
      if (i < node.keys.length && keysEqual(node.keys[i]!, key)) return node.vals[i]!
      const kid = node.kids[i]!
      if (kid === null) return null
      const child = this.open(kid, node.layer - 1)
      // Keep the opened node so later operations do not decode it again
      // (replacing a stub by its node does not change the tree).
      node.kids[i] = child
      node = child
    }
    return null
  }

  /** Set `key` → `val`; returns the value it replaced, or null if the key was new. */
  put(key: Uint8Array, val: Uint8Array): Uint8Array | null {
    const height = keyHeight(key)
    let root = this.root
    if (root === null) {
      this.root = new MstNode(height, [key], [val], [null, null], null)
      return null
    }
    if (height > root.layer) {
      // New top layers: each starts with the old root as its left subtree; the
      // insert at `height` then splits that chain around the key.
      while (root.layer < height) root = new MstNode(root.layer + 1, [], [], [root], null)
      this.root = root
    }
    return this.putIn(root, key, val, height)
  }

  private putIn(node: MstNode, key: Uint8Array, val: Uint8Array, height: number): Uint8Array | null {
    const i = lowerBound(node.keys, key)
    const found = i < node.keys.length && keysEqual(node.keys[i]!, key)
    if (node.layer === height) {
      node.cid = null
      if (found) {
        const old = node.vals[i]!
        node.vals[i] = val
        return old
      }
      const [left, right] = this.split(node.kids[i]!, key, node.layer - 1)
      node.keys.splice(i, 0, key)
      node.vals.splice(i, 0, val)
      node.kids.splice(i, 1, left, right)
      return null
    }
    if (found) badMst('key found on the wrong layer')
    const kid = node.kids[i]!
    if (kid === null) {
      node.cid = null
      node.kids[i] = chain(node.layer - 1, key, val, height)
      return null
    }
    const child = this.open(kid, node.layer - 1)
    node.kids[i] = child
    const old = this.putIn(child, key, val, height)
    node.cid = null
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
    const n = node.keys.length
    const i = lowerBound(node.keys, key)
    if (i < n && keysEqual(node.keys[i]!, key)) badMst('key found on the wrong layer')
    const [l, r] = this.split(node.kids[i]!, key, layer - 1)
    if (r === null && i === n && l === node.kids[n]) return [node, null]
    if (l === null && i === 0 && r === node.kids[0]) return [null, node]
    const left = new MstNode(layer, node.keys.slice(0, i), node.vals.slice(0, i), node.kids.slice(0, i), null)
    left.kids.push(l)
    const rightKids = node.kids.slice(i)
    rightKids[0] = r
    const right = new MstNode(layer, node.keys.slice(i), node.vals.slice(i), rightKids, null)
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
    while (top !== null && top.keys.length === 0) {
      const kid: Link = top.kids[0]!
      top = kid === null ? null : this.open(kid, top.layer - 1)
    }
    this.root = top
    return old
  }

  private removeIn(node: MstNode, key: Uint8Array, height: number): Uint8Array | null {
    const i = lowerBound(node.keys, key)
    const found = i < node.keys.length && keysEqual(node.keys[i]!, key)
    if (node.layer === height) {
      if (!found) return null
      const old = node.vals[i]!
      const merged = this.merge(node.kids[i]!, node.kids[i + 1]!, node.layer - 1)
      node.keys.splice(i, 1)
      node.vals.splice(i, 1)
      node.kids.splice(i, 2, merged)
      node.cid = null
      return old
    }
    if (found) badMst('key found on the wrong layer')
    const kid = node.kids[i]!
    if (kid === null) return null
    const child = this.open(kid, node.layer - 1)
    node.kids[i] = child
    const old = this.removeIn(child, key, height)
    if (old === null) return null
    // Trim from the bottom: a subtree left with nothing at all disappears.
    if (child.isEmpty()) node.kids[i] = null
    node.cid = null
    return old
  }

  /** Join two adjacent subtrees on `layer` (every key of `a` sorts before `b`). */
  private merge(a: Link, b: Link, layer: number): Link {
    if (a === null) return b
    if (b === null) return a
    const left = this.open(a, layer)
    const right = this.open(b, layer)
    const mid = this.merge(left.kids[left.kids.length - 1]!, right.kids[0]!, layer - 1)
    const kids = left.kids.slice(0, -1)
    kids.push(mid)
    for (let i = 1; i < right.kids.length; i++) kids.push(right.kids[i]!)
    return new MstNode(layer, left.keys.concat(right.keys), left.vals.concat(right.vals), kids, null)
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
    return cidOf(this.root, collect)
  }

  /** Every (key, value) in key order. Opens the whole tree. */
  *entries(): Generator<[Uint8Array, Uint8Array]> {
    if (this.root !== null) yield* this.walk(this.root)
  }

  private *walk(node: MstNode): Generator<[Uint8Array, Uint8Array]> {
    for (let i = 0; i <= node.keys.length; i++) {
      const kid = node.kids[i]!
      if (kid !== null) yield* this.walk(this.open(kid, node.layer - 1))
      if (i < node.keys.length) yield [node.keys[i]!, node.vals[i]!]
    }
  }
}

function chain(layer: number, key: Uint8Array, val: Uint8Array, height: number): MstNode {
  // Links never skip a layer: empty intermediate nodes down to the key's layer.
  if (layer === height) return new MstNode(layer, [key], [val], [null, null], null)
  return new MstNode(layer, [], [], [chain(layer - 1, key, val, height)], null)
}

function cidOf(link: MstNode | Uint8Array, collect?: BlockMap): Uint8Array {
  if (!(link instanceof MstNode)) return link
  if (link.cid !== null) return link.cid
  const kidCids = link.kids.map((kid) => (kid === null ? null : cidOf(kid, collect)))
  if (collect === undefined) {
    // Only the CID is needed: hash the encoding in scratch space.
    link.cid = cidForCbor(encodeNodeScratch(link.keys, link.vals, kidCids))
    return link.cid
  }
  const bytes = encodeNode(link.keys, link.vals, kidCids)
  const cid = cidForCbor(bytes)
  link.cid = cid
  collect.set(cid, bytes)
  return cid
}

