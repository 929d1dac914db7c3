/**
 * Sync 1.1 MST inversion (PROTOCOL §4.3): undo a commit's ops on the partial
 * tree carried in its CAR slice and return the previous data root, which the
 * caller compares with `prevData`.
 */
import { cidEquals, copyBytes } from '../cid.js'
import type { ReadonlyBlockMap } from '../blocks.js'
import { MstError } from './errors.js'
import { keyBytes } from './key.js'
import type { MstLoadOptions } from './load.js'
import { MstTree } from './tree.js'

export interface MstOp {
  action: 'create' | 'update' | 'delete'
  path: string
  /** New value: set for create/update, null for delete. */
  cid: Uint8Array | null
  /** Previous value: null for create, set for update/delete. */
  prev: Uint8Array | null
}

/** A checked op with its key bytes (from normaliseOps). */
export interface NormalOp {
  op: MstOp
  key: Uint8Array
}

function badOp(op: MstOp, why: string): never {
  throw new MstError('bad-op', `${op.action} ${op.path}: ${why}`)
}

/**
 * Check each op's shape and that paths are unique; returns them sorted by path
 * so that any failure is reported the same way whatever the input order.
 * `requirePrev: false` accepts legacy update/delete ops without `prev`.
 */
export function normaliseOps(ops: readonly MstOp[], requirePrev = true): NormalOp[] {
  const seen = new Set<string>()
  const out: NormalOp[] = []
  for (const op of ops) {
    if (typeof op.path !== 'string' || op.path.length === 0) badOp(op, 'empty path')
    if (seen.has(op.path)) badOp(op, 'duplicate path in one commit')
    seen.add(op.path)
    switch (op.action) {
      case 'create':
        if (!op.cid || op.prev) badOp(op, 'create needs cid and no prev')
        break
      case 'update':
        if (!op.cid || (requirePrev && !op.prev)) badOp(op, 'update needs cid and prev')
        break
      case 'delete':
        if (op.cid || (requirePrev && !op.prev)) badOp(op, 'delete needs prev and no cid')
        break
      default:
        badOp(op, 'unknown action')
    }
    out.push({ op, key: keyBytes(op.path) })
  }
  if (out.length > 1) out.sort((a, b) => (a.op.path < b.op.path ? -1 : a.op.path > b.op.path ? 1 : 0))
  return out
}

/**
 * Undo `ops` on the tree rooted at `root` (the commit's `data`), using only
 * `blocks` (hash-verified by the caller), and return the previous root CID.
 * Throws MstError: `bad-op` for malformed/duplicate ops or ops that do not
 * match the tree, `missing-block` when the slice lacks a node the inversion
 * must open, `bad-mst` for malformed nodes. With no ops, returns `root`
 * (copied) without reading any block.
 */
export function invertOps(
  root: Uint8Array,
  blocks: ReadonlyBlockMap,
  ops: readonly MstOp[],
  opts?: MstLoadOptions,
): Uint8Array {
  return invertNormalisedOps(root, blocks, normaliseOps(ops), opts)
}

/** `invertOps` for ops the caller has already passed through `normaliseOps` (with `prev` required). */
export function invertNormalisedOps(
  root: Uint8Array,
  blocks: ReadonlyBlockMap,
  normal: readonly NormalOp[],
  opts?: MstLoadOptions,
): Uint8Array {
  // No ops: the tree is unchanged and no block needs to be opened.
  if (normal.length === 0) return copyBytes(root)
  return invertOnTree(MstTree.load(root, blocks, opts), normal)
}

/** `invertNormalisedOps` on a tree already loaded at the new root (nodes it opened are not scanned again). */
export function invertOnTree(tree: MstTree, normal: readonly NormalOp[]): Uint8Array {
  for (const { op, key } of normal) {
    if (op.action === 'create') {
      const removed = tree.remove(key)
      if (removed === null) badOp(op, 'path not in the new tree')
      if (!cidEquals(removed, op.cid)) badOp(op, 'tree value differs from op cid')
    } else if (op.action === 'update') {
      const replaced = tree.put(key, op.prev!)
      if (replaced === null) badOp(op, 'path not in the new tree')
      if (!cidEquals(replaced, op.cid)) badOp(op, 'tree value differs from op cid')
    } else {
      const replaced = tree.put(key, op.prev!)
      if (replaced !== null) badOp(op, 'deleted path still in the new tree')
    }
  }
  return copyBytes(tree.rootCid())
}
