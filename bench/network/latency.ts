/** Latency summaries the consumer hands back (per second with a mergeable histogram, per minute). */
export interface LatencySummary {
  /** unix seconds (per-second) or unix minutes × 60 (per-minute) */
  t: number
  n: number
  p50: number
  p99: number
  max: number
  /** per-second only: sparse log histogram [bucket, count] (see latencyBucket), mergeable over any window */
  h?: [number, number][]
}

/** Log-spaced latency buckets, 20 per decade from 0.1 ms: bucket b covers [0.1·10^(b/20), 0.1·10^((b+1)/20)) ms. */
export function latencyBucket(ms: number): number {
  return Math.max(0, Math.floor(20 * Math.log10(Math.max(ms, 0.1) / 0.1)))
}
export function bucketUpperMs(b: number): number {
  return 0.1 * 10 ** ((b + 1) / 20)
}
