/** The host cursor tracker across a sequence reset (the unit behind reset-race.test.ts). */
import { describe, expect, it } from 'vitest'
import { HostCursorTracker } from '../../src/sequencer/host-cursors.js'

describe('HostCursorTracker.reset', () => {
  it('old events finishing after the reset do not move the new cursor', () => {
    const t = new HostCursorTracker()
    for (const seq of [7, 8, 9]) t.begin(1, seq)
    t.handled(1, 7)
    t.committing(1, 9)
    expect(t.cursor(1)).toBe(7)
    t.reset(1)
    expect(t.cursor(1)).toBeUndefined()
    // The new sequence starts over.
    t.begin(1, 1)
    // Old 8 (re-begun by submit, then committed) and old 9 finish now.
    t.begin(1, 8)
    t.committing(1, 8)
    t.committed(1, 8)
    t.committed(1, 9)
    expect(t.cursor(1)).toBe(0)
    expect(t.inFlight(1)).toBe(1)
    t.handled(1, 1)
    expect(t.cursor(1)).toBe(1)
    expect(t.pendingWrites().get(1)).toBe(1)
    // Once the old ones are gone, the same seqs belong to the new sequence.
    for (const seq of [2, 3, 4, 5, 6, 7, 8, 9]) {
      t.begin(1, seq)
      t.handled(1, seq)
    }
    expect(t.cursor(1)).toBe(9)
  })

  it('other hosts are unaffected', () => {
    const t = new HostCursorTracker()
    t.begin(1, 5)
    t.begin(2, 5)
    t.reset(1)
    t.handled(2, 5)
    t.handled(1, 5)
    expect(t.cursor(2)).toBe(5)
    expect(t.cursor(1)).toBeUndefined()
  })
})
