/**
 * Whole-tree helpers for tests, benchmarks and fixture generation (a fake PDS
 * producing commits). Not used on the relay's hot path.
 */
import { bytesEqual, cidEquals, copyBytes } from '../cid.js'
import { BlockMap, type ReadonlyBlockMap } from '../blocks.js'
import { MstError } from './errors.js'
import { compareKeys, keyBytes, lowerBound } from './key.js'
import { normaliseOps, type MstOp } from './invert.js'
import { loadNode, loadRoot } from './load.js'
import { MstTree } from './tree.js'

const utf8 = new TextDecoder('utf-8', { fatal: true })

/** Build the canonical tree holding `entries`; `blocks` has every node. */
export function buildMst(entries: Iterable<[key: string, value: Uint8Array]>): { root: Uint8Array; blocks: BlockMap } {
  const blocks = new BlockMap()
  const tree = MstTree.empty(blocks)
  for (const [key, value] of entries) tree.put(keyBytes(key), copyBytes(value))
  const root = tree.rootCid(blocks)
  return { root, blocks }
}

/** Blocks of `first`, falling back to `second`. */
export function layeredBlocks(first: ReadonlyBlockMap, second: ReadonlyBlockMap): ReadonlyBlockMap {
  return {
    get: (cid) => first.get(cid) ?? second.get(cid),
    has: (cid) => first.has(cid) || second.has(cid),
    get size() {
      return first.size + second.size
    },
    *entries() {
      yield* first.entries()
      for (const entry of second.entries()) if (!first.has(entry[0])) yield entry
    },
  }
}

export interface ApplyOpsResult {
  /** The new data root. */
  root: Uint8Array
  /** Every node block new in this revision. */
  blocks: BlockMap
  /**
   * The node blocks a commit's CAR slice must carry for inversion: the new
   * blocks plus the covering proof (paths to each op's key and its neighbours)
   * in the new tree. Needs the whole old tree in `blocks`.
   */
  proofBlocks: BlockMap
}

/**
 * Apply creates/updates/deletes forward to the tree at `root`. Checks ops like
 * a PDS would: create needs an absent key, update/delete a present one (and
 * `prev`, when given, must match). Throws MstError('bad-op') otherwise.
 */
export function applyOps(root: Uint8Array, blocks: ReadonlyBlockMap, ops: readonly MstOp[]): ApplyOpsResult {
  const normal = normaliseOps(ops, false)
  const tree = MstTree.load(root, blocks)
  for (const { op, key } of normal) {
    if (op.action === 'delete') {
      const old = tree.remove(key)
      if (old === null) throw new MstError('bad-op', `delete ${op.path}: path not in tree`)
      if (op.prev && !cidEquals(old, op.prev)) throw new MstError('bad-op', `delete ${op.path}: prev mismatch`)
      continue
    }
    const old = tree.put(key, copyBytes(op.cid!))
    if (op.action === 'create' && old !== null) throw new MstError('bad-op', `create ${op.path}: path exists`)
    if (op.action === 'update') {
      if (old === null) throw new MstError('bad-op', `update ${op.path}: path not in tree`)
      if (op.prev && !cidEquals(old, op.prev)) throw new MstError('bad-op', `update ${op.path}: prev mismatch`)
    }
  }
  const newBlocks = new BlockMap()
  const newRoot = tree.rootCid(newBlocks)
  const all = layeredBlocks(newBlocks, blocks)
  const proofBlocks = coveringProof(
    newRoot,
    all,
    normal.map((n) => n.op.path),
  )
  for (const [cid, bytes] of newBlocks.entries()) proofBlocks.set(cid, bytes)
  return { root: newRoot, blocks: newBlocks, proofBlocks }
}

/** Record the nodes on the search path for `key` into `out`. */
function pathProof(root: Uint8Array, blocks: ReadonlyBlockMap, key: Uint8Array, out: BlockMap): void {
  let cid: Uint8Array | null = root
  let node = loadRoot(blocks, root)
  out.set(root, blocks.get(root)!)
  while (node !== null) {
    const f = node.find(key)
    if (f & 1) return
    cid = node.kid(f >> 1) as Uint8Array | null
    if (cid === null) return
    node = loadNode(blocks, cid, node.layer - 1)
    out.set(cid, blocks.get(cid)!)
  }
}

/**
 * Covering proof in the tree at `root` for each key: the nodes on the path to
 * the key and to its immediate left and right neighbours (whether or not the
 * key itself is present). Opens the whole tree to find neighbours.
 */
export function coveringProof(root: Uint8Array, blocks: ReadonlyBlockMap, keys: Iterable<string>): BlockMap {
  const out = new BlockMap()
  const all = [...MstTree.load(root, blocks).entries()].map(([k]) => k)
  for (const path of keys) {
    const key = keyBytes(path)
    pathProof(root, blocks, key, out)
    let i = lowerBound(all, key)
    if (i > 0) pathProof(root, blocks, all[i - 1]!, out)
    if (i < all.length && bytesEqual(all[i]!, key)) i++
    if (i < all.length) pathProof(root, blocks, all[i]!, out)
  }
  return out
}

/** Every (path, value CID) in the tree, in key order. Opens the whole tree. */
export function mstEntries(root: Uint8Array, blocks: ReadonlyBlockMap): [string, Uint8Array][] {
  const out: [string, Uint8Array][] = []
  let prev: Uint8Array | null = null
  for (const [k, v] of MstTree.load(root, blocks, { checkAllKeyHeights: true }).entries()) {
    if (prev !== null && compareKeys(prev, k) >= 0) throw new MstError('bad-mst', 'keys out of order across nodes')
    prev = k
    out.push([utf8.decode(k), copyBytes(v)])
  }
  return out
}
