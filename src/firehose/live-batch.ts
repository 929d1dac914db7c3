/**
 * Paces the firehose's live fan-out: at most one broadcast write per consumer per
 * `intervalMs` (RELAY_FIREHOSE_FLUSH_INTERVAL). Events committed within the interval
 * after a write are held (they are already in the ring, in seq order) and go out together
 * as one buffer per consumer when it ends; an event arriving after a quiet interval goes
 * out at once. So a busy stream costs one write (one syscall) per consumer per interval
 * however small the sequencer's batches are, at a latency of at most `intervalMs`, and a
 * quiet one costs no latency. 0 writes every committed batch as it arrives.
 */
import type { RingEntry } from './ring.js'

export class LiveBatcher {
  private pending: RingEntry[] = []
  private timer: NodeJS.Timeout | undefined
  private lastFlush = Number.NEGATIVE_INFINITY

  constructor(
    private readonly intervalMs: number,
    private readonly write: (entries: RingEntry[]) => void,
  ) {
    if (!Number.isFinite(intervalMs) || intervalMs < 0) throw new RangeError(`flush interval must be >= 0 ms, got ${intervalMs}`)
  }

  /** Entries just committed (and pushed to the ring), in seq order. */
  add(entries: RingEntry[]): void {
    if (this.intervalMs === 0) {
      this.write(entries)
      return
    }
    for (const e of entries) this.pending.push(e)
    const now = performance.now()
    const wait = this.lastFlush + this.intervalMs - now
    if (wait <= 0) {
      this.flush(now)
      return
    }
    if (this.timer === undefined) {
      this.timer = setTimeout(() => {
        this.timer = undefined
        this.flush(performance.now())
      }, wait)
      this.timer.unref()
    }
  }

  /** Drops what is held (the stream was reset, or the firehose is closing). */
  clear(): void {
    clearTimeout(this.timer)
    this.timer = undefined
    this.pending = []
  }

  private flush(now: number): void {
    clearTimeout(this.timer)
    this.timer = undefined
    this.lastFlush = now
    const entries = this.pending
    this.pending = []
    if (entries.length > 0) this.write(entries)
  }
}
