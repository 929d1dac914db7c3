/**
 * The in-memory ring of recently published events, already framed for the
 * WebSocket wire, so lagging consumers catch up without touching the database.
 */
export { wsFrame, wsFrameParts } from '../http/ws-frame-header.js'

export interface RingEntry {
  seq: number
  accountId: number
  /** A complete unmasked binary WebSocket frame (ws header + event frame). */
  wire: Buffer
  /** Set when the account was taken down: no longer sent to catching-up consumers. */
  removed: boolean
}

/** Default byte bound of the ring's frames: with large events, 10,000 of them could hold hundreds of MB. */
export const DEFAULT_RING_MAX_BYTES = 32 * 1024 * 1024

export class FrameRing {
  private readonly slots: (RingEntry | undefined)[]
  /** Absolute index of the next entry to be written; entry k lives in slot k % capacity. */
  private total = 0
  /** Absolute index of the oldest entry still held. */
  private start = 0
  /** Sum of the held entries' wire bytes. */
  private heldBytes = 0
  /**
   * Every published event with seq > floor is in the ring. Infinity until the
   * first event arrives (nothing can be served from the ring before that).
   */
  floor = Number.POSITIVE_INFINITY

  /**
   * At most `capacity` entries and, beyond the newest one, at most `maxBytes`
   * of frames: the oldest entries go first when either bound is exceeded.
   */
  constructor(
    readonly capacity: number,
    readonly maxBytes: number = DEFAULT_RING_MAX_BYTES,
  ) {
    if (!Number.isSafeInteger(capacity) || capacity < 1) throw new RangeError(`ring size must be >= 1, got ${capacity}`)
    if (!Number.isSafeInteger(maxBytes) || maxBytes < 1) throw new RangeError(`ring byte bound must be >= 1, got ${maxBytes}`)
    this.slots = new Array(capacity)
  }

  get size(): number {
    return this.total - this.start
  }

  /** Wire bytes currently held. */
  get bytes(): number {
    return this.heldBytes
  }

  push(entry: RingEntry): void {
    if (this.total === 0) this.floor = entry.seq - 1
    if (this.size === this.capacity) this.evictOldest()
    this.slots[this.total % this.capacity] = entry
    this.total++
    this.heldBytes += entry.wire.byteLength
    // The newest entry always stays, however large.
    while (this.heldBytes > this.maxBytes && this.size > 1) this.evictOldest()
  }

  private evictOldest(): void {
    const slot = this.start % this.capacity
    const evicted = this.slots[slot] as RingEntry
    this.slots[slot] = undefined // release the frame now, not when the slot is reused
    this.heldBytes -= evicted.wire.byteLength
    this.floor = evicted.seq
    this.start++
  }

  /** Absolute index of the first entry with seq > afterSeq (== end() when none). */
  indexAfter(afterSeq: number): number {
    let lo = this.start
    let hi = this.total
    while (lo < hi) {
      const mid = Math.floor((lo + hi) / 2)
      if ((this.at(mid) as RingEntry).seq <= afterSeq) lo = mid + 1
      else hi = mid
    }
    return lo
  }

  end(): number {
    return this.total
  }

  /** Entry at an absolute index, or undefined once evicted. */
  at(index: number): RingEntry | undefined {
    if (index < this.start || index >= this.total) return undefined
    return this.slots[index % this.capacity]
  }

  /** Marks an account's entries removed (takedown). */
  removeAccount(accountId: number): number {
    let n = 0
    for (const e of this.slots) {
      if (e !== undefined && e.accountId === accountId && !e.removed) {
        e.removed = true
        n++
      }
    }
    return n
  }
}
