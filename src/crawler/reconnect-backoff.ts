/**
 * When to redial one host: the count of consecutive failed connections and
 * the delay before the next dial (backoff.ts, full jitter).
 *
 * The count starts over after a healthy connection. A connection that
 * delivers events is healthy, except after one that ended on a refused frame
 * (bad framing, over a decode limit): then only a connection that keeps
 * delivering for HEALTHY_AFTER_REFUSAL_MS is, so a host that sends one good
 * event before each bad frame keeps backing off further.
 */
import { backoffDelay, type BackoffOptions } from '../backoff.js'

export const HEALTHY_AFTER_REFUSAL_MS = 60_000

export class ReconnectBackoff {
  private failures = 0
  private refusedSinceHealthy = false

  constructor(private readonly opts: BackoffOptions) {}

  /** Consecutive failed connections. */
  get attempt(): number {
    return this.failures
  }

  /** A connection ended or a dial failed: the delay before the next dial. */
  failed(refused: boolean, retryAfterMs: number | undefined): number {
    if (refused) this.refusedSinceHealthy = true
    this.failures++
    return Math.max(backoffDelay(this.failures, this.opts), retryAfterMs ?? 0)
  }

  /** An event arrived on a connection open since `connectedSince` (ms). */
  delivered(connectedSince: number, now = Date.now()): void {
    if (this.failures === 0) return
    if (this.refusedSinceHealthy && now - connectedSince < HEALTHY_AFTER_REFUSAL_MS) return
    this.reset()
  }

  /** The operator asked for a retry now. */
  reset(): void {
    this.failures = 0
    this.refusedSinceHealthy = false
  }
}
