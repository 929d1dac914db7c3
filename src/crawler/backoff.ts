/** Exponential backoff with full jitter: a random delay in [0, min(max, base·2^(attempt−1))). */

export interface BackoffOptions {
  baseMs: number
  maxMs: number
}

export const DEFAULT_BACKOFF: BackoffOptions = { baseMs: 1_000, maxMs: 180_000 }

/** Delay before retry number `attempt` (1 = first retry). */
export function backoffDelay(attempt: number, opts: BackoffOptions, random: () => number = Math.random): number {
  const ceiling = Math.min(opts.maxMs, opts.baseMs * 2 ** Math.min(Math.max(attempt - 1, 0), 30))
  return Math.floor(random() * ceiling)
}
