/**
 * The relay's one exponential backoff: the ceiling min(max, base·factor^(attempt−1)),
 * used as is for internal retries (sequencer commit, ingest retry) and with full
 * jitter, a random delay in [0, ceiling), for reconnecting to hosts (so many
 * hosts that dropped together do not redial together).
 */

export interface BackoffOptions {
  baseMs: number
  maxMs: number
  /** Growth per attempt (default 2). */
  factor?: number
}

export const DEFAULT_BACKOFF: BackoffOptions = { baseMs: 1_000, maxMs: 180_000 }

/** The ceiling before retry number `attempt` (1 = first retry), without jitter. */
export function backoffCeiling(attempt: number, opts: BackoffOptions): number {
  // The exponent is clamped so a long outage cannot overflow to Infinity before the cap applies.
  return Math.min(opts.maxMs, opts.baseMs * (opts.factor ?? 2) ** Math.min(Math.max(attempt - 1, 0), 30))
}

/** Delay before retry number `attempt` (1 = first retry), with full jitter. */
export function backoffDelay(attempt: number, opts: BackoffOptions, random: () => number = Math.random): number {
  return Math.floor(random() * backoffCeiling(attempt, opts))
}
