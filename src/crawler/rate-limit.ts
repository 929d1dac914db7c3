/**
 * Per-host event rate limits (ANCHOR-INDIGO §4.3): sliding windows per second,
 * hour and day, scaled by the host's account limit. A host over a limit is held
 * back (the crawler stops reading its socket) rather than losing events.
 *
 * The window is the usual two-bucket approximation: the previous fixed window's
 * count weighted by how much of it still overlaps, plus the current count. It
 * needs O(1) memory even for 500 M events per day.
 */

export interface HostRateLimits {
  perSecond: number
  perHour: number
  perDay: number
}

/** The limits indigo applies: large fixed ones for trusted hosts, otherwise scaled by the account limit. */
export function hostRateLimits(accountLimit: number, trusted: boolean): HostRateLimits {
  if (trusted) return { perSecond: 5_000, perHour: 50_000_000, perDay: 500_000_000 }
  return {
    perSecond: 50 + Math.floor(accountLimit / 1_000),
    perHour: 2_500 + accountLimit,
    perDay: 20_000 + accountLimit * 10,
  }
}

export class SlidingWindow {
  private windowStart = 0
  private previous = 0
  private current = 0

  constructor(
    public limit: number,
    readonly windowMs: number,
  ) {}

  /** 0 when one more event fits now, else the milliseconds until it will. */
  waitMs(now: number): number {
    this.roll(now)
    const elapsed = (now - this.windowStart) / this.windowMs
    if (this.previous * (1 - elapsed) + this.current + 1 <= this.limit) return 0
    const nextWindow = this.windowStart + this.windowMs - now
    if (this.current + 1 > this.limit || this.previous === 0) return Math.max(1, Math.ceil(nextWindow))
    // previous·(1 − f) + current + 1 ≤ limit  ⇔  f ≥ 1 − (limit − current − 1)/previous
    const f = 1 - (this.limit - this.current - 1) / this.previous
    return Math.max(1, Math.ceil(f * this.windowMs - (now - this.windowStart)))
  }

  record(now: number): void {
    this.roll(now)
    this.current++
  }

  /** The weighted count over the last window. */
  count(now: number): number {
    this.roll(now)
    const elapsed = (now - this.windowStart) / this.windowMs
    return Math.round(this.previous * (1 - elapsed) + this.current)
  }

  private roll(now: number): void {
    const start = now - (now % this.windowMs)
    if (start === this.windowStart) return
    this.previous = start - this.windowStart === this.windowMs ? this.current : 0
    this.current = 0
    this.windowStart = start
  }
}

export interface RateLimitState extends HostRateLimits {
  /** Events counted in each window right now. */
  counts: HostRateLimits
}

/** The windows of HostRateLimits, in ms. */
const SECOND_MS = 1_000
const HOUR_MS = 3_600_000
const DAY_MS = 86_400_000

/** The three windows of one host. */
export class HostRateLimiter {
  private readonly second: SlidingWindow
  private readonly hour: SlidingWindow
  private readonly day: SlidingWindow

  constructor(limits: HostRateLimits) {
    this.second = new SlidingWindow(limits.perSecond, SECOND_MS)
    this.hour = new SlidingWindow(limits.perHour, HOUR_MS)
    this.day = new SlidingWindow(limits.perDay, DAY_MS)
  }

  /** Changes the limits live (the counts are kept). */
  setLimits(limits: HostRateLimits): void {
    this.second.limit = limits.perSecond
    this.hour.limit = limits.perHour
    this.day.limit = limits.perDay
  }

  /** 0 when one more event may go now, else how long to hold the host back. */
  waitMs(now = Date.now()): number {
    return Math.max(this.second.waitMs(now), this.hour.waitMs(now), this.day.waitMs(now))
  }

  /** The window holding the host back now (the one with the longest wait), or null when one more event may go. */
  blockingWindow(now = Date.now()): keyof HostRateLimits | null {
    const waits: [keyof HostRateLimits, number][] = [
      ['perDay', this.day.waitMs(now)],
      ['perHour', this.hour.waitMs(now)],
      ['perSecond', this.second.waitMs(now)],
    ]
    const [window, wait] = waits.reduce((a, b) => (b[1] > a[1] ? b : a))
    return wait > 0 ? window : null
  }

  record(now = Date.now()): void {
    this.second.record(now)
    this.hour.record(now)
    this.day.record(now)
  }

  state(now = Date.now()): RateLimitState {
    return {
      perSecond: this.second.limit,
      perHour: this.hour.limit,
      perDay: this.day.limit,
      counts: { perSecond: this.second.count(now), perHour: this.hour.count(now), perDay: this.day.count(now) },
    }
  }
}
