/**
 * Per-host upstream cursors and the tickets that move them (DESIGN §1 guarantee 2).
 *
 * The crawler opens one ticket per upstream event when its frame arrives.
 * Each ticket ends exactly once: committed with its batch (the sequencer),
 * dropped with a reason (ingest or the crawler), or deferred (not processed
 * in this process, e.g. shutting down: it is fetched again after a restart).
 * Ingest handles several DIDs of one host concurrently, so tickets end out of
 * order; a host's cursor is the highest seq below which every ticket was
 * committed or dropped. A deferred ticket holds the cursor below it until the
 * host's sequence is reset or the relay restarts.
 *
 * This class owns the tickets' states; the crawler and ingest only resolve them.
 * A ticket resolved twice, or found unresolved where ingest ends, is a bug:
 * reported to `onMisuse` (counted; tests throw).
 */
import type { DropReason } from '../atproto/drop-reasons.js'

export type TicketState = 'open' | 'submitted' | 'committing' | 'committed' | 'dropped' | 'deferred'

/** Why a ticket was deferred (logged with misuse reports). */
export type DeferReason = 'stopping' | 'discarded' | 'not-committed'

export type TicketMisuse = 'resolved-twice' | 'unresolved'

/** One upstream event of one host on its way through the relay. */
export class UpstreamTicket {
  /** @internal Only the tracker changes it. */
  _state: TicketState = 'open'
  /** Why it was dropped or deferred, for misuse reports. */
  _why: DropReason | DeferReason | undefined

  /** @internal Use HostCursorTracker.open. */
  constructor(
    private readonly tracker: HostCursorTracker,
    readonly hostId: number,
    readonly seq: number,
    /** The host's sequence this ticket belongs to; null when the cursor was already past its seq. */
    readonly _track: HostTrack | null,
  ) {}

  get state(): TicketState {
    return this._state
  }

  /** Still to be resolved by ingest or the crawler (not yet handed to the sequencer, not ended). */
  get open(): boolean {
    return this._state === 'open'
  }

  /** Dropped on purpose (the caller counts it under `reason`): the cursor may pass it. */
  drop(reason: DropReason): void {
    this.tracker.drop(this, reason)
  }

  /** Not processed in this process: the cursor stays below it, so it is fetched again after a restart. */
  defer(why: DeferReason): void {
    this.tracker.defer(this, why)
  }
}

const ENDED: ReadonlySet<TicketState> = new Set(['committed', 'dropped', 'deferred'])

/** @internal One host's sequence: its live tickets in seq order. */
export class HostTrack {
  /** Tickets sorted by seq; [head, length) are live, earlier ones are consumed. */
  tickets: UpstreamTicket[] = []
  head = 0
  /** Highest seq the cursor has been advanced to in memory (never persisted by this class). */
  cursor = 0
  /** The cursor value last written to the database. */
  persisted = 0
  /** Live tickets in state `deferred` (so `open` looks for one to replace only when there is one). */
  deferred = 0

  /** Upstream seqs arrive in order, so this is nearly always an append. */
  insert(t: UpstreamTicket): void {
    let i = this.tickets.length
    while (i > this.head && (this.tickets[i - 1] as UpstreamTicket).seq > t.seq) i--
    if (i === this.tickets.length) this.tickets.push(t)
    else this.tickets.splice(i, 0, t)
  }

  /**
   * A redial re-sent `seq`: its deferred ticket (left by a connection that stopped with the frame
   * still queued) is removed, so the new ticket holds the cursor in its place. Without this the
   * deferred ticket would hold the cursor for the rest of the process (an unblocked host, say).
   */
  replaceDeferred(seq: number): void {
    for (let i = this.head; i < this.tickets.length; i++) {
      const t = this.tickets[i] as UpstreamTicket
      if (t.seq > seq) return
      if (t.seq === seq && t._state === 'deferred') {
        this.tickets.splice(i, 1)
        this.deferred--
        return
      }
    }
  }

  /** The cursor if tickets being committed were committed too (changes nothing). */
  peek(countCommitting: boolean): number {
    let cursor = this.cursor
    for (let i = this.head; i < this.tickets.length; i++) {
      const t = this.tickets[i] as UpstreamTicket
      const s = t._state
      if (s === 'committed' || s === 'dropped' || (countCommitting && s === 'committing')) cursor = t.seq
      else break
    }
    return cursor
  }

  /** Consumes committed and dropped tickets from the front and moves the in-memory cursor. */
  advance(): void {
    while (this.head < this.tickets.length) {
      const t = this.tickets[this.head] as UpstreamTicket
      if (t._state !== 'committed' && t._state !== 'dropped') break
      if (t.seq > this.cursor) this.cursor = t.seq
      this.tickets[this.head] = undefined as unknown as UpstreamTicket
      this.head++
    }
    // Compact occasionally so the array does not grow without bound.
    if (this.head > 1024 && this.head * 2 > this.tickets.length) {
      this.tickets = this.tickets.slice(this.head)
      this.head = 0
    }
  }

  get inFlight(): number {
    return this.tickets.length - this.head
  }
}

export interface HostCursorTrackerOptions {
  /** A ticket resolved twice or left unresolved; the tracker has already kept the cursor safe. */
  onMisuse?: (kind: TicketMisuse, ticket: UpstreamTicket, detail: string) => void
  /** A ticket was dropped (its host's cursor may have moved without a commit). */
  onDropped?: () => void
}

export class HostCursorTracker {
  /** Per host, the current sequence; a reset replaces it, so old tickets ending later touch nothing. */
  private readonly hosts = new Map<number, HostTrack>()
  private readonly onMisuse: NonNullable<HostCursorTrackerOptions['onMisuse']>
  private readonly onDropped: () => void

  constructor(opts: HostCursorTrackerOptions = {}) {
    this.onMisuse = opts.onMisuse ?? (() => {})
    this.onDropped = opts.onDropped ?? (() => {})
  }

  private track(hostId: number): HostTrack {
    let t = this.hosts.get(hostId)
    if (t === undefined) {
      t = new HostTrack()
      this.hosts.set(hostId, t)
    }
    return t
  }

  /** A frame with upstream `seq` arrived from `hostId`: the cursor cannot pass it until its ticket is committed or dropped. */
  open(hostId: number, seq: number): UpstreamTicket {
    const track = this.track(hostId)
    // At or below the cursor (a redial re-sent it): tracked for its resolution only.
    if (seq <= track.cursor) return new UpstreamTicket(this, hostId, seq, null)
    const ticket = new UpstreamTicket(this, hostId, seq, track)
    if (track.deferred > 0) track.replaceDeferred(seq)
    track.insert(ticket)
    return ticket
  }

  /** @internal via UpstreamTicket.drop */
  drop(ticket: UpstreamTicket, reason: DropReason): void {
    if (!this.expect(ticket, 'open', `drop (${reason})`)) return
    ticket._state = 'dropped'
    ticket._why = reason
    ticket._track?.advance()
    this.onDropped()
  }

  /** @internal via UpstreamTicket.defer; the sequencer also defers submitted tickets it gives up on. */
  defer(ticket: UpstreamTicket, why: DeferReason): void {
    if (ticket._state !== 'submitted' && !this.expect(ticket, 'open', `defer (${why})`)) return
    ticket._state = 'deferred'
    ticket._why = why
    if (ticket._track) ticket._track.deferred++
  }

  /** The sequencer took the event: from now on only it resolves the ticket. */
  submitted(ticket: UpstreamTicket): void {
    if (this.expect(ticket, 'open', 'submit')) ticket._state = 'submitted'
  }

  /** Its batch is being committed (again, when a commit is retried). */
  committing(ticket: UpstreamTicket): void {
    if (ticket._state === 'submitted' || ticket._state === 'committing') ticket._state = 'committing'
    else this.expect(ticket, 'submitted', 'commit')
  }

  /** Its batch committed. */
  committed(ticket: UpstreamTicket): void {
    if (!this.expect(ticket, 'committing', 'committed')) return
    ticket._state = 'committed'
    ticket._track?.advance()
  }

  /**
   * Where ingest ends: a ticket still open is a bug. Reported, then dropped
   * under `reason` so the cursor moves on. Returns whether it had to.
   */
  settle(ticket: UpstreamTicket, reason: DropReason): boolean {
    if (ticket._state !== 'open') return false
    this.onMisuse('unresolved', ticket, `ingest ended without resolving it; dropped as ${reason}`)
    this.drop(ticket, reason)
    return true
  }

  private expect(ticket: UpstreamTicket, state: TicketState, action: string): boolean {
    if (ticket._state === state) return true
    const kind: TicketMisuse = ENDED.has(ticket._state) ? 'resolved-twice' : 'unresolved'
    this.onMisuse(kind, ticket, `${action} on a ticket that is ${ticket._state}${ticket._why ? ` (${ticket._why})` : ''}`)
    return false
  }

  /**
   * Cursor values to write in a batch that is about to commit: hosts whose
   * cursor (counting tickets being committed as done) differs from the last written value.
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
   * The host's sequence was reset upstream (FutureCursor) and the crawler
   * starts over: a new sequence begins. Tickets of the old one still resolve
   * (exactly once) but no longer move any cursor.
   */
  reset(hostId: number): void {
    this.hosts.delete(hostId)
  }
}
