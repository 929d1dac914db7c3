/**
 * The pull-model cut-off, shared by the firehose's consumers and Jetstream's subscribers
 * (JETSTREAM.md, "How Jetstream v2 fans out"): a reader that has been live and falls
 * behind is not closed for being behind alone. It keeps reading from the ring, then the
 * event log, at its own pace, holding no more than its socket's high-water mark; it is
 * closed (`too-slow`, ConsumerTooSlow) only when it is more than `maxLag` seqs behind
 * the head AND has moved through the stream slower than `minRate` seqs per second for
 * a whole window of `windowMs`.
 *
 * The rate is seqs passed (events sent or skipped), measured from a checkpoint taken
 * when the reader went beyond the lag: each time a window has elapsed, the progress
 * since the checkpoint is judged, and a reader fast enough starts a new window. A
 * reader that stops reading is therefore closed between one and two windows after it
 * stopped (once beyond the lag), and never one that is within the lag.
 */

export interface SlowReaderLimits {
  /** Seqs a once-live reader may be behind the head before its rate is judged. */
  maxLag: number
  /** Seqs per second a reader beyond the lag must keep up. */
  minRate: number
  /** How long its rate must stay below `minRate` before it is closed. */
  windowMs: number
}

/** A reader's progress as the policy sees it; one per consumer or subscriber, owned by it. */
export class ReadProgress {
  /** When the current window started (undefined: within the lag, nothing measured). */
  since: number | undefined = undefined
  /** The reader's position then. */
  from = 0

  /** Forgets the window (the reader is live again, or within the lag). */
  reset(): void {
    this.since = undefined
  }
}

export type SlowVerdict = { slow: false } | { slow: true; lag: number; rate: number; seconds: number }

/** What a sweep needs of a firehose consumer or a Jetstream subscriber. */
export interface JudgedReader {
  readonly state: string
  /** It has been live once: a first backfill from a cursor is never judged. */
  readonly reachedLive: boolean
  readonly progress: ReadProgress
}

export class SlowReaderPolicy {
  readonly maxLag: number
  readonly minRate: number
  readonly windowMs: number
  private sweepCount = 0

  constructor(limits: SlowReaderLimits) {
    if (!Number.isSafeInteger(limits.maxLag) || limits.maxLag < 1) throw new RangeError(`maxLag must be a positive integer, got ${limits.maxLag}`)
    if (!Number.isFinite(limits.minRate) || limits.minRate <= 0) throw new RangeError(`minRate must be a positive number, got ${limits.minRate}`)
    if (!Number.isFinite(limits.windowMs) || limits.windowMs <= 0) throw new RangeError(`windowMs must be a positive number, got ${limits.windowMs}`)
    this.maxLag = limits.maxLag
    this.minRate = limits.minRate
    this.windowMs = limits.windowMs
  }

  /** Sweeps so far: a reader paced on the relay's judging (tests) waits for the next one. */
  get sweeps(): number {
    return this.sweepCount
  }

  /** How often readers should be judged: often enough that a window is not overrun by much. */
  get checkIntervalMs(): number {
    return Math.max(50, Math.min(1_000, Math.floor(this.windowMs / 4)))
  }

  /**
   * One sweep over the readers: a live one starts afresh, one catching up after
   * having been live is judged at `position(reader)`; `onSlow` gets each found slow.
   */
  sweep<R extends JudgedReader>(readers: Iterable<R>, position: (r: R) => number, head: number, now: number, onSlow: (r: R, verdict: SlowVerdict & { slow: true }) => void): void {
    this.sweepCount++
    for (const r of readers) {
      if (r.state === 'live') r.progress.reset()
      else if (r.state === 'catchup' && r.reachedLive) {
        const verdict = this.judge(r.progress, position(r), head, now)
        if (verdict.slow) onSlow(r, verdict)
      }
    }
  }

  /**
   * Judges one reader at `position` (its last seq passed) with the stream at `head`.
   * Call it for readers that have been live and are not being fed live writes.
   */
  judge(p: ReadProgress, position: number, head: number, now: number): SlowVerdict {
    const lag = head - position
    if (lag <= this.maxLag) {
      p.reset()
      return { slow: false }
    }
    if (p.since === undefined) {
      p.since = now
      p.from = position
      return { slow: false }
    }
    const elapsed = now - p.since
    if (elapsed < this.windowMs) return { slow: false }
    const rate = ((position - p.from) * 1000) / elapsed
    if (rate < this.minRate) return { slow: true, lag, rate, seconds: elapsed / 1000 }
    // Fast enough over this window: judge the next one from here.
    p.since = now
    p.from = position
    return { slow: false }
  }
}
