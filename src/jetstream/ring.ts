/**
 * Recent events for Jetstream subscribers, newest last, bounded by count and
 * bytes. Every committed event since the relay started enters it, so any
 * seq above `floor` that is not in it was never committed (seqs are dense
 * except across a restart's gap).
 */
import type { JetEvent } from './jet-event.js'

export class JetRing {
  private items: JetEvent[] = []
  /** Bytes counted for each item when it was pushed. */
  private sizes: number[] = []
  private start = 0
  private bytes = 0
  /** Events at or below this seq are not in the ring (read them from the log). */
  floor: number

  constructor(
    private readonly maxEvents: number,
    private readonly maxBytes: number,
    floor: number,
  ) {
    this.floor = floor
  }

  push(e: JetEvent, bytes: number): void {
    this.items.push(e)
    this.sizes.push(bytes)
    this.bytes += bytes
    while (this.size > this.maxEvents || (this.bytes > this.maxBytes && this.size > 1)) {
      this.bytes -= this.sizes[this.start] as number
      this.floor = (this.items[this.start++] as JetEvent).seq
    }
    if (this.start > 1024 && this.start * 2 > this.items.length) {
      this.items = this.items.slice(this.start)
      this.sizes = this.sizes.slice(this.start)
      this.start = 0
    }
  }

  get size(): number {
    return this.items.length - this.start
  }

  /** Marks the account's events before `beforeSeq` removed (a takedown); returns how many. */
  forgetDid(did: string, beforeSeq: number): number {
    let n = 0
    for (let i = this.start; i < this.items.length; i++) {
      const e = this.items[i] as JetEvent
      if (e.seq < beforeSeq && e.did === did && !e.removed) {
        e.removed = true
        n++
      }
    }
    return n
  }

  /** Up to `max` events with seq > afterSeq (afterSeq ≥ floor). */
  after(afterSeq: number, max: number): JetEvent[] {
    let lo = this.start
    let hi = this.items.length
    while (lo < hi) {
      const mid = (lo + hi) >>> 1
      if ((this.items[mid] as JetEvent).seq <= afterSeq) lo = mid + 1
      else hi = mid
    }
    return this.items.slice(lo, Math.min(lo + max, this.items.length))
  }
}
