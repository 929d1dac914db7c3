/**
 * This process's live memory, for tests that prove a relay does not keep a backlog. A real collector
 * runs twice with a pause between: V8 frees the backing stores of collected Buffers after the
 * collection, concurrently, so one collection alone measures what is still waiting to be freed (it
 * swung by ±20 MB between samples of one run).
 */
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'

setFlagsFromString('--expose-gc')
const gc = runInNewContext('gc') as () => void

export interface SettledMemory {
  /** The JavaScript heap in use. */
  heap: number
  /** The heap plus Buffer and ArrayBuffer backing stores. */
  total: number
}

export async function settledMemory(): Promise<SettledMemory> {
  gc()
  await new Promise((resolve) => setTimeout(resolve, 20))
  gc()
  const m = process.memoryUsage()
  return { heap: m.heapUsed, total: m.heapUsed + m.arrayBuffers }
}

/**
 * Growth between the start and the end of a run of samples taken after each round: each end is the
 * lowest of `window` samples, because pooled buffers make a sawtooth of a few MB over a few rounds.
 */
export function settledGrowth(samples: number[], window = 4): number {
  if (samples.length < 2 * window) throw new Error(`settledGrowth needs at least ${2 * window} samples, got ${samples.length}`)
  return Math.min(...samples.slice(-window)) - Math.min(...samples.slice(0, window))
}
