/**
 * What an accepted #commit or #sync changes in the listReposByCollection index
 * (written by the sequencer in the same statement as the event). A delete whose
 * proof blocks cannot show whether its collection still has records keeps the
 * pair, and is counted, never removed on a guess.
 */
import type { Counter } from 'prom-client'
import type { CollectionDelta } from '../sequencer/collection-writes.js'
import type { VerifyKind, VerifyOutcome } from './verify-runner.js'

/**
 * `discontinuous`: the commit does not follow the stored head (since/prevData differ), so commits
 * the relay never saw may have gained or emptied collections: the account is re-read as after a #sync.
 */
export function collectionDelta(kind: VerifyKind, outcome: Extract<VerifyOutcome, { ok: true }>, undecided: Counter, discontinuous = false): CollectionDelta | undefined {
  // A #sync may stand for any change to the repo: its collections are re-read from the PDS.
  if (kind === 'sync') return { recheck: true }
  const changes = outcome.collections
  if (changes !== undefined && changes.undecided.length > 0) undecided.inc(changes.undecided.length)
  const gained = changes?.gained ?? []
  const emptied = changes?.emptied ?? []
  if (gained.length === 0 && emptied.length === 0) return discontinuous ? { recheck: true } : undefined
  return { gained, emptied, ...(discontinuous ? { recheck: true } : {}) }
}
