/**
 * The listReposByCollection index's share of a batch: what each accepted event
 * changes in `repo_collection` (and which accounts must be re-read from their
 * PDS), reduced to one net change per (account, collection), so the batch's
 * one statement never both inserts and deletes the same row (data-modifying
 * CTEs run on one snapshot, in no defined order).
 */

/** What one accepted event does to the index. */
export interface CollectionDelta {
  /** Collections the account has a record in after this event (a create). */
  gained?: readonly string[]
  /** Collections this event left without any record (a delete, decided from the proof blocks). */
  emptied?: readonly string[]
  /** #sync: the repo may have changed arbitrarily; its collections are re-read from the PDS. */
  recheck?: boolean
  /** The account was deleted: all its pairs go. */
  removeAll?: boolean
}

export interface CollectionWrites {
  /** Pairs to add if absent: parallel arrays, for `unnest`. */
  insert: { collections: string[]; accountIds: number[] }
  remove: { collections: string[]; accountIds: number[] }
  /** Accounts whose every pair goes. */
  removeAccounts: number[]
  /** Accounts to re-read from their PDS (the backfill queue). */
  recheck: number[]
}

export function isEmptyCollectionWrites(w: CollectionWrites): boolean {
  return w.insert.accountIds.length === 0 && w.remove.accountIds.length === 0 && w.removeAccounts.length === 0 && w.recheck.length === 0
}

/**
 * Net effect of `deltas` in batch order. Per (account, collection) the last
 * change wins (an account's events are in order within a batch). An account
 * deleted in the batch loses every pair, and any change of it in the same batch
 * is left out (a deleted account commits nothing afterwards).
 */
export function reduceCollectionDeltas(deltas: Iterable<{ accountId: number; delta: CollectionDelta | undefined }>): CollectionWrites {
  const net = new Map<number, Map<string, boolean>>()
  const removeAccounts = new Set<number>()
  const recheck = new Set<number>()
  for (const { accountId, delta } of deltas) {
    if (delta === undefined) continue
    if (delta.removeAll) {
      removeAccounts.add(accountId)
      net.delete(accountId)
      continue
    }
    if (delta.recheck) recheck.add(accountId)
    if (removeAccounts.has(accountId)) continue
    const gained = delta.gained ?? []
    const emptied = delta.emptied ?? []
    if (gained.length === 0 && emptied.length === 0) continue
    let changes = net.get(accountId)
    if (changes === undefined) net.set(accountId, (changes = new Map()))
    for (const c of emptied) changes.set(c, false)
    for (const c of gained) changes.set(c, true)
  }
  const out: CollectionWrites = {
    insert: { collections: [], accountIds: [] },
    remove: { collections: [], accountIds: [] },
    removeAccounts: [...removeAccounts],
    recheck: [...recheck].filter((id) => !removeAccounts.has(id)),
  }
  for (const [accountId, changes] of net) {
    for (const [collection, present] of changes) {
      const side = present ? out.insert : out.remove
      side.collections.push(collection)
      side.accountIds.push(accountId)
    }
  }
  return out
}
