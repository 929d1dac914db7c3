/**
 * Per-host upstream cursor tracking (DESIGN §1 guarantee 2).
 *
 * Ingest handles several DIDs of one host concurrently, so upstream events
 * finish out of order. A host's cursor may only move to an upstream seq once
 * every event from that host up to it is committed or deliberately dropped:
 * the cursor is the highest finished seq below the lowest one still in flight.
 */

type EntryState = 'pending' | 'committing' | 'done'

interface Entry {
  seq: number
  state: EntryState
}

class HostTrack {
  /** Entries sorted by seq; [head, length) are live, earlier ones are consumed. */
  entries: Entry[] = []
  head = 0
  /** Highest seq the cursor has been advanced to in memory (never persisted by this class). */
  cursor = 0
  /** The cursor value last written to the database. */
  persisted = 0

  find(seq: number): Entry | undefined {
    const i = this.indexOf(seq)
    const e = this.entries[i]
    return e !== undefined && e.seq === seq ? e : undefined
  }

  /** Insert position for seq (first index whose seq >= it). Usually the end: upstream seqs arrive in order. */
  indexOf(seq: number): number {
    const last = this.entries[this.entries.length - 1]
    if (last === undefined || last.seq < seq) return this.entries.length
    let lo = this.head
    let hi = this.entries.length
    while (lo < hi) {
      const mid = (lo + hi) >>> 1
      if ((this.entries[mid] as Entry).seq < seq) lo = mid + 1
      else hi = mid
    }
    return lo
  }

  upsert(seq: number, state: EntryState): void {
    const i = this.indexOf(seq)
    const e = this.entries[i]
    if (e !== undefined && e.seq === seq) {
      e.state = state
      return
    }
    this.entries.splice(i, 0, { seq, state })
  }

  /** The cursor if entries in `committing` state were committed too (does not change anything). */
  peek(countCommitting: boolean): number {
    let cursor = this.cursor
    for (let i = this.head; i < this.entries.length; i++) {
      const e = this.entries[i] as Entry
      if (e.state === 'done' || (countCommitting && e.state === 'committing')) cursor = e.seq
      else break
    }
    return cursor
  }

  /** Consumes finished entries from the front and moves the in-memory cursor. */
  advance(): void {
    while (this.head < this.entries.length) {
      const e = this.entries[this.head] as Entry
      if (e.state !== 'done') break
      if (e.seq > this.cursor) this.cursor = e.seq
      this.head++
    }
    // Compact occasionally so the array does not grow without bound.
    if (this.head > 1024 && this.head * 2 > this.entries.length) {
      this.entries = this.entries.slice(this.head)
      this.head = 0
    }
  }

  get inFlight(): number {
    return this.entries.length - this.head
  }
}

export class HostCursorTracker {
  private readonly hosts = new Map<number, HostTrack>()
  /**
   * Per host: seqs of the sequence before the last reset that were still in
   * flight then. Their late calls must not count towards the new sequence
   * (an old seq finishing would drag the cursor back above every new one).
   */
  private readonly retired = new Map<number, Set<number>>()

  /** True when `seq` is an event of the old sequence (its begin came before the reset); finishing it forgets it. */
  private isRetired(hostId: number, seq: number, finished: boolean): boolean {
    const old = this.retired.get(hostId)
    if (old === undefined || !old.has(seq)) return false
    // A new event with the same seq already being tracked is the new sequence's.
    if (this.hosts.get(hostId)?.find(seq) !== undefined) return false
    if (finished) {
      old.delete(seq)
      if (old.size === 0) this.retired.delete(hostId)
    }
    return true
  }

  private track(hostId: number): HostTrack {
    let t = this.hosts.get(hostId)
    if (t === undefined) {
      t = new HostTrack()
      this.hosts.set(hostId, t)
    }
    return t
  }

  /** Ingest started processing upstream `seq` of `hostId`. */
  begin(hostId: number, seq: number): void {
    if (this.isRetired(hostId, seq, false)) return
    const t = this.track(hostId)
    if (seq <= t.cursor) return
    if (t.find(seq) === undefined) t.upsert(seq, 'pending')
  }

  /** The event was dropped on purpose: it counts as handled now. */
  handled(hostId: number, seq: number): void {
    if (this.isRetired(hostId, seq, true)) return
    const t = this.track(hostId)
    if (seq <= t.cursor) return
    t.upsert(seq, 'done')
    t.advance()
  }

  /** The event went into a batch that is being committed. */
  committing(hostId: number, seq: number): void {
    if (this.isRetired(hostId, seq, false)) return
    const t = this.track(hostId)
    if (seq <= t.cursor) return
    t.upsert(seq, 'committing')
  }

  /** The batch holding these upstream seqs committed. */
  committed(hostId: number, seq: number): void {
    if (this.isRetired(hostId, seq, true)) return
    const t = this.hosts.get(hostId)
    if (t === undefined || seq <= t.cursor) return
    const e = t.find(seq)
    if (e !== undefined) e.state = 'done'
    t.advance()
  }

  /**
   * Cursor values to write in a batch that is about to commit: hosts whose
   * cursor (counting `committing` entries as done) differs from the last written value.
   */
  pendingWrites(): Map<number, number> {
    const out = new Map<number, number>()
    for (const [hostId, t] of this.hosts) {
      const c = t.peek(true)
      if (c !== t.persisted && c > 0) out.set(hostId, c)
    }
    return out
  }

  /** Those values are now durable. */
  persisted(writes: Map<number, number>): void {
    for (const [hostId, c] of writes) {
      const t = this.hosts.get(hostId)
      if (t !== undefined) t.persisted = c
    }
  }

  /** True when some host's cursor moved in memory and is not yet written. */
  hasUnwritten(): boolean {
    for (const t of this.hosts.values()) if (t.peek(false) !== t.persisted && t.peek(false) > 0) return true
    return false
  }

  /** In-memory cursor (what has been fully handled), or undefined for an unknown host. */
  cursor(hostId: number): number | undefined {
    return this.hosts.get(hostId)?.cursor
  }

  inFlight(hostId: number): number {
    return this.hosts.get(hostId)?.inFlight ?? 0
  }

  /**
   * Forget a host's state, e.g. when its sequence was reset upstream (FutureCursor)
   * and the crawler starts over from a new cursor.
   */
  reset(hostId: number): void {
    const t = this.hosts.get(hostId)
    this.hosts.delete(hostId)
    if (t === undefined) return
    const old = this.retired.get(hostId) ?? new Set<number>()
    for (let i = t.head; i < t.entries.length; i++) {
      const e = t.entries[i] as Entry
      if (e.state !== 'done') old.add(e.seq)
    }
    if (old.size > 0) this.retired.set(hostId, old)
  }
}
