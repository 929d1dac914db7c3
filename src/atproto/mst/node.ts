/**
 * One MST node, lazily opened and copy-on-write. Nodes not yet opened are CID stubs (see MstTree).
 *
 * Blocks are trusted to hash to their CIDs (the caller verifies every CAR
 * block), so an unmodified node keeps the CID it was loaded under and is never
 * re-encoded. A loaded node stays in its scanned form (offsets into its block)
 * until its entries change; if only its children's CIDs change, its new
 * encoding is its old block with those digests patched in.
 */
import { bytesEqual, cidForCbor } from '../cid.js'
import type { BlockMap } from '../blocks.js'
import { lowerBound } from './key.js'
import { encodeNode, encodeNodeScratch, layoutFind, layoutKeys, layoutKid, layoutKidDigest, layoutValue, type NodeLayout } from './node-codec.js'

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
