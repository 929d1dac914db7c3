/**
 * Zipf activity over the active accounts: account i (global index over all
 * hosts) has rank perm[i] (a seeded shuffle, the same in every process) and
 * weight 1 / rank^s. Host processes pick their next account by weight; the
 * parent splits the offered rate over host processes by their weight sums.
 */
import { Rng } from '../../test/helpers/records.js'

export function zipfWeights(total: number, s: number, seed: number): Float64Array {
  const ranks = new Uint32Array(total)
  for (let i = 0; i < total; i++) ranks[i] = i + 1
  const rng = new Rng(seed)
  for (let i = total - 1; i > 0; i--) {
    const j = rng.int(i + 1)
    const t = ranks[i]!
    ranks[i] = ranks[j]!
    ranks[j] = t
  }
  const w = new Float64Array(total)
  for (let i = 0; i < total; i++) w[i] = 1 / ranks[i]! ** s
  return w
}

/** Picks indexes in [0, n) by weight (cumulative sums, binary search). */
export class WeightedPicker {
  private readonly cum: Float64Array
  readonly total: number

  constructor(weights: ArrayLike<number>) {
    this.cum = new Float64Array(weights.length)
    let sum = 0
    for (let i = 0; i < weights.length; i++) this.cum[i] = sum += weights[i]!
    this.total = sum
  }

  pick(u: number): number {
    const x = u * this.total
    let lo = 0
    let hi = this.cum.length - 1
    while (lo < hi) {
      const mid = (lo + hi) >> 1
      if (this.cum[mid]! > x) hi = mid
      else lo = mid + 1
    }
    return lo
  }
}
