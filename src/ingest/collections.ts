/**
 * What an accepted #commit or #sync changes in the listReposByCollection index
 * (written by the sequencer in the same statement as the event). A delete whose
 * proof blocks cannot show whether its collection still has records keeps the
 * pair, and is counted, never removed on a guess.
 */
import type { Counter } from 'prom-client'
import type { CollectionDelta } from '../sequencer/collection-writes.js'
import type { VerifyKind, VerifyOutcome } from './verify-runner.js'

export function collectionDelta(kind: VerifyKind, outcome: Extract<VerifyOutcome, { ok: true }>, undecided: Counter): CollectionDelta | undefined {
  // A #sync may stand for any change to the repo: its collections are re-read from the PDS.
  if (kind === 'sync') return { recheck: true }
  const changes = outcome.collections
  if (changes === undefined) return undefined
  if (changes.undecided.length > 0) undecided.inc(changes.undecided.length)
  if (changes.gained.length === 0 && changes.emptied.length === 0) return undefined
  return { gained: changes.gained, emptied: changes.emptied }
}
