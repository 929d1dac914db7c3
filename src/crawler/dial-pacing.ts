/**
 * Start-up dial pacing: every known host is dialled at one per `intervalMs` on average, so thousands do not dial
 * (DNS, TCP, TLS, then each host's backlog) at once. Paced against a schedule, not slept per dial: a timer per host
 * costs 2-3 ms on a busy machine, which stretched 3,000 hosts at 1 ms each over 8 s.
 */
/** Dials made at once to catch up after a stall (a GC pause, a blocked loop); beyond this the schedule slips instead. */
const MAX_CATCH_UP_DIALS = 20

export class DialPacer {
  private startedAt: number
  private dials = 0

  constructor(
    private readonly intervalMs: number,
    private readonly now: () => number = () => performance.now(),
  ) {
    this.startedAt = now()
  }

  /**
   * Counts a dial; the milliseconds to wait before the next one (0 while behind the schedule, so it
   * catches up, but by at most MAX_CATCH_UP_DIALS: a long stall must not release its backlog at once).
   */
  dialled(): number {
    this.dials++
    const now = this.now()
    const earliestDue = now - MAX_CATCH_UP_DIALS * this.intervalMs
    if (this.startedAt + this.dials * this.intervalMs < earliestDue) this.startedAt = earliestDue - this.dials * this.intervalMs
    return Math.max(0, this.startedAt + this.dials * this.intervalMs - now)
  }
}
