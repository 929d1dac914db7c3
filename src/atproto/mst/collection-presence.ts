/**
 * Which collections a commit makes appear in, or disappear from, its repo:
 * what the listReposByCollection index needs, decided from the commit alone
 * (no per-record state).
 *
 * Keys of one collection (`<nsid>/<rkey>`) are contiguous in the MST's key
 * order, and a deleted key sat inside that run. So the collection still has a
 * record after the commit exactly when the deleted key's nearest neighbours in
 * the NEW tree (the key just below and just above it) include one with the
 * prefix `<nsid>/`. The neighbours lie on the search path of the deleted key,
 * which Sync 1.1 proof blocks carry: inverting the delete walks that very path.
 * When the slice lacks a node on it the answer is unknown (`undecided`), and the
 * caller keeps the collection rather than wrongly remove it.
 *
 * Pure: no I/O; blocks are trusted to hash to their CIDs (verify.ts checks them).
 */
import type { ReadonlyBlockMap } from '../blocks.js'
import { MstError } from './errors.js'
import { keyBytes } from './key.js'
import type { MstNode } from './node.js'
import { MstTree } from './tree.js'

export interface CollectionOp {
  action: 'create' | 'update' | 'delete'
  path: string
}

export interface CollectionChanges {
  /** Collections with a create in this commit (the account has at least one record there now). */
  gained: string[]
  /** Collections a delete left without any record. */
  emptied: string[]
  /** Collections with a delete whose effect the proof blocks cannot show (kept). */
  undecided: string[]
}

function noChanges(): CollectionChanges {
  return { gained: [], emptied: [], undecided: [] }
}

/** The collection (NSID) part of a repo path `<collection>/<rkey>`. */
export function collectionOfPath(path: string): string {
  const slash = path.indexOf('/')
  return slash < 0 ? path : path.slice(0, slash)
}

/**
 * Whether the tree rooted at `root` holds any key starting with `prefix`,
 * looking only at the neighbours of `key` (a key absent from the tree that
 * itself starts with `prefix`). `null`: a node on the path is not in `blocks`.
 */
export function prefixRemainsAround(root: Uint8Array | MstTree, blocks: ReadonlyBlockMap, key: Uint8Array, prefix: Uint8Array): boolean | null {
  // Keys with the prefix are exactly those in [prefix, end), end = the prefix with its last byte raised
  // (`<nsid>/` → `<nsid>0`): the neighbours are tested with three searches per node, no key decoded.
  const end = prefix.slice()
  end[end.length - 1]! += 1
  try {
    const tree = root instanceof MstTree ? root : MstTree.load(root, blocks)
    let node: MstNode | null = tree.root
    while (node !== null) {
      const f = node.find(key)
      // The key itself is still there (not a real delete): the collection certainly remains.
      if (f & 1) return true
      const i = f >> 1
      // The key below the gap (index i − 1) is ≥ prefix, so it has it (it is also < key, inside the run).
      if (i > 0 && node.find(prefix) >> 1 < i) return true
      // The key above the gap (index i) is < end, so it has it.
      if (node.find(end) >> 1 > i) return true
      // Anything nearer to the key than this node's neighbours is in the subtree between them.
      node = tree.child(node, i)
    }
    return false
  } catch (err) {
    if (err instanceof MstError) return null
    throw err
  }
}

/**
 * The collection changes of a commit whose new data root is `dataCid` (or the tree loaded at it, not yet
 * changed: the nodes opened here are then not scanned again by the inversion). One neighbour check per
 * collection that has deletes and no create (any deleted key of a collection decides it: they all sit in
 * the same run of keys).
 */
export function collectionChanges(data: Uint8Array | MstTree, blocks: ReadonlyBlockMap, ops: readonly CollectionOp[]): CollectionChanges {
  if (ops.length === 0) return noChanges()
  const created = new Set<string>()
  const deleted = new Map<string, string>()
  for (const op of ops) {
    const collection = collectionOfPath(op.path)
    if (op.action === 'create') created.add(collection)
    else if (op.action === 'delete' && !deleted.has(collection)) deleted.set(collection, op.path)
  }
  if (deleted.size === 0 && created.size === 0) return noChanges()
  const emptied: string[] = []
  const undecided: string[] = []
  for (const [collection, path] of deleted) {
    if (created.has(collection)) continue
    const remains = prefixRemainsAround(data, blocks, keyBytes(path), keyBytes(`${collection}/`))
    if (remains === false) emptied.push(collection)
    else if (remains === null) undecided.push(collection)
  }
  return { gained: [...created], emptied, undecided }
}
