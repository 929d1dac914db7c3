/** The host cursor tracker and its upstream tickets (the unit behind reset-race.test.ts and test/crawler/upstream-tickets.test.ts). */
import { describe, expect, it } from 'vitest'
import { HostCursorTracker, type TicketMisuse } from '../../src/sequencer/host-cursors.js'

function tracker() {
  const misuse: TicketMisuse[] = []
  const t = new HostCursorTracker({ onMisuse: (kind) => misuse.push(kind) })
  return { t, misuse }
}

/** What the sequencer does with a ticket it commits. */
function commit(t: HostCursorTracker, ticket: ReturnType<HostCursorTracker['open']>): void {
  t.submitted(ticket)
  t.committing(ticket)
  t.committed(ticket)
}

describe('upstream tickets', () => {
  it('the cursor passes only committed or dropped tickets, in seq order', () => {
    const { t, misuse } = tracker()
    const [a, b, c, d] = [1, 2, 3, 4].map((seq) => t.open(7, seq)) as [ReturnType<HostCursorTracker['open']>, ReturnType<HostCursorTracker['open']>, ReturnType<HostCursorTracker['open']>, ReturnType<HostCursorTracker['open']>]
    commit(t, c)
    d.drop('duplicate')
    expect(t.cursor(7)).toBe(0)
    a.drop('bad-signature')
    expect(t.cursor(7)).toBe(1)
    // Being committed counts for the cursor written with that batch, not for the in-memory one.
    t.submitted(b)
    t.committing(b)
    expect(t.pendingWrites().get(7)).toBe(4)
    expect(t.cursor(7)).toBe(1)
    t.committed(b)
    expect(t.cursor(7)).toBe(4)
    expect(t.inFlight(7)).toBe(0)
    expect(misuse).toEqual([])
  })

  it('a deferred ticket holds the cursor below it', () => {
    const { t } = tracker()
    const a = t.open(7, 10)
    const b = t.open(7, 11)
    a.defer('stopping')
    b.drop('duplicate')
    expect(t.cursor(7)).toBe(0)
    expect(a.state).toBe('deferred')
  })

  it('a re-sent seq replaces its deferred ticket, so the cursor moves on after a redial in the same process', () => {
    const { t, misuse } = tracker()
    const first = [1, 2, 3].map((seq) => t.open(7, seq))
    commit(t, first[0]!)
    // The connection stopped with 2 and 3 still queued (a host blocked, say).
    first[1]!.defer('stopping')
    first[2]!.defer('stopping')
    expect(t.cursor(7)).toBe(1)
    // Unblocked: the new connection dials from cursor 1 and the host sends 2, 3 and 4 again.
    const again = [2, 3, 4].map((seq) => t.open(7, seq))
    commit(t, again[0]!)
    expect(t.cursor(7)).toBe(2)
    again[1]!.drop('duplicate')
    commit(t, again[2]!)
    expect(t.cursor(7)).toBe(4)
    expect(t.inFlight(7)).toBe(0)
    expect(misuse).toEqual([])
  })

  it('a ticket resolved twice is reported and changes nothing', () => {
    const { t, misuse } = tracker()
    const a = t.open(7, 1)
    a.drop('duplicate')
    a.drop('bad-frame')
    a.defer('stopping')
    t.submitted(a)
    expect(misuse).toEqual(['resolved-twice', 'resolved-twice', 'resolved-twice'])
    expect(a.state).toBe('dropped')
    const b = t.open(7, 2)
    commit(t, b)
    b.drop('duplicate')
    expect(misuse).toHaveLength(4)
    expect(t.cursor(7)).toBe(2)
  })

  it('settle reports a ticket left open and drops it so the cursor moves on', () => {
    const { t, misuse } = tracker()
    const a = t.open(7, 1)
    const b = t.open(7, 2)
    b.drop('duplicate')
    expect(t.settle(b, 'internal-error')).toBe(false)
    expect(t.settle(a, 'internal-error')).toBe(true)
    expect(misuse).toEqual(['unresolved'])
    expect(t.cursor(7)).toBe(2)
  })

  it('a seq at or below the cursor (re-sent after a redial) resolves without moving anything', () => {
    const { t, misuse } = tracker()
    t.open(7, 5).drop('duplicate')
    const again = t.open(7, 5)
    again.drop('duplicate')
    expect(t.cursor(7)).toBe(5)
    expect(misuse).toEqual([])
  })
})

describe('HostCursorTracker.reset', () => {
  it('old tickets ending after the reset do not move the new cursor', () => {
    const { t, misuse } = tracker()
    const old = [7, 8, 9].map((seq) => t.open(1, seq))
    old[0]!.drop('duplicate')
    t.submitted(old[2]!)
    t.committing(old[2]!)
    expect(t.cursor(1)).toBe(7)
    t.reset(1)
    expect(t.cursor(1)).toBeUndefined()
    // The new sequence starts over.
    const first = t.open(1, 1)
    // Old 8 and 9 finish now, each exactly once.
    commit(t, old[1]!)
    t.committed(old[2]!)
    expect(t.cursor(1)).toBe(0)
    expect(t.inFlight(1)).toBe(1)
    first.drop('duplicate')
    expect(t.cursor(1)).toBe(1)
    expect(t.pendingWrites().get(1)).toBe(1)
    // The same seqs belong to the new sequence now.
    for (const seq of [2, 3, 4, 5, 6, 7, 8, 9]) t.open(1, seq).drop('duplicate')
    expect(t.cursor(1)).toBe(9)
    expect(misuse).toEqual([])
  })

  it('other hosts are unaffected', () => {
    const { t } = tracker()
    const a = t.open(1, 5)
    const b = t.open(2, 5)
    t.reset(1)
    b.drop('duplicate')
    a.drop('duplicate')
    expect(t.cursor(2)).toBe(5)
    expect(t.cursor(1)).toBeUndefined()
  })
})
