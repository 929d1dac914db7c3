/**
 * A mutable, lazily loaded MST over a block map: get, put, remove and the new root CID.
 * Nodes not yet opened are CID stubs; opening one whose block is absent throws
 * `missing-block`, so a tree loaded from a CAR slice works as long as the operations
 * stay inside it. The nodes themselves are node.ts; reading and checking them, load.ts.
 */
import type { BlockMap, ReadonlyBlockMap } from '../blocks.js'
import { cidEquals } from '../cid.js'
import { keyHeight } from './key.js'
import { EMPTY_NODE_BYTES } from './node-codec.js'
import { MstNode, type Link } from './node.js'
import { badMst, emptyRootCid, loadNode, loadRoot, type MstLoadOptions } from './load.js'
import { untrimmedTopIs } from './untrimmed-top.js'

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
    // Trim empty nodes from the top, as @atproto/repo does after a delete (a pointer-only
    // root it left before goes too: see untrimmed-top.ts).
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

  /**
   * Whether `cid` is this tree with its top trimmed or under pointer-only nodes (an
   * untrimmed top, see untrimmed-top.ts): the forms a previous root may take besides
   * `rootCid()` itself. Computes the CIDs of changed nodes.
   */
  hasUntrimmedForm(cid: Uint8Array): boolean {
    let core = this.root
    if (core === null) return false
    // The tree's own pointer-only top, which put keeps (only remove trims it).
    while (core.size === 0) {
      const below = this.child(core, 0)
      if (below === null) return false
      core = below
    }
    const coreCid = core.computeCid()
    return (core !== this.root && cidEquals(coreCid, cid)) || untrimmedTopIs(coreCid, core.layer, cid)
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
