/**
 * (b) Latency, host send → consumer receive, at fractions of the maximum
 * ingest rate measured in the same run. One relay (fresh database) per rate;
 * two windows of that one stream: the corpus's new-account burst, then steady
 * state once every account exists.
 */
import { setTimeout as sleep } from 'node:timers/promises'
import type { CorpusParams } from '../corpus/params.js'
import { startFleet, windowBetween, withRelay, type Log, type Sample, type WindowStats } from './harness.js'
import { cpuReading, loadAverage } from './machine.js'
import { addHosts, ingestCounts, relayWsUrl } from './relay-under-test.js'

export interface LatencyResult {
  loadAvg: [number, number, number]
  offeredPerSec: number
  /** Measured from this long after the hosts were added, for `windowMs`. */
  warmMs?: number
  windowMs?: number
  window: WindowStats
  count: number
  p50: number
  p90: number
  p99: number
  max: number
  mean: number
  probe: { received: number; matched: number; unmatched: number; other: number; errors: string[] }
  /** Events of accounts the probe had already seen vs each account's first #commit/#sync. */
  existingAccounts?: { count: number; p50: number; p99: number }
  firstEventOfAccount?: { count: number; p50: number; p99: number }
  dropped: Record<string, number>
  lastErrors: string[]
}

/**
 * The two windows as fractions of the time the corpus takes at the offered rate (frames ÷ rate):
 * the burst window holds the tail of the corpus's new-account burst (its accounts are created in the
 * first seconds; at 2,000/s on the default corpus this is ~3.7–13.4 s), steady state the rest up to
 * 90 %, when every account exists (~13.4–22 s).
 */
export const LATENCY_WINDOWS = { burst: [0.15, 0.55], steady: [0.55, 0.9] } as const

export interface LatencyLevel {
  /** of the maximum ingest rate (absent: a fixed rate, no maximum known) */
  fraction?: number
  rate: number
  burst?: LatencyResult
  steady?: LatencyResult
}

export interface LatencyPhase {
  /** the maximum ingest rate the levels are fractions of, and where it came from */
  maxRate?: number
  source: 'ingest' | 'flag' | 'fallback'
  levels: LatencyLevel[]
}

type Latency = Omit<LatencyResult, 'loadAvg' | 'offeredPerSec' | 'window' | 'dropped' | 'lastErrors'>

/** One stream at `rate` frames/s offered; each window measured in turn on it. */
export async function runLatency(o: { params: Partial<CorpusParams>; rate: number; frames: number; windows: ('burst' | 'steady')[]; log: Log }): Promise<Partial<Record<'burst' | 'steady', LatencyResult>>> {
  const loadAvg = loadAverage()
  const fleet = await startFleet(o.params, o.rate, o.log)
  try {
    return await withRelay('postgres', fleet.ready.staticPlcUrl, async (relay) => {
      const hosts = fleet.ready.hosts.map((h) => h.hostname)
      const total = fleet.ready.totalFrames
      const durationMs = (o.frames / o.rate) * 1000
      await fleet.rpc.call('probe', { url: relayWsUrl(relay) })
      await addHosts(relay, hosts)
      const t0 = performance.now()
      const at = (): Sample => {
        const c = ingestCounts(relay, hosts)
        return { t: (performance.now() - t0) / 1000, seq: relay.sequencer.currentSeq(), handled: c.accepted + c.dropped, ...cpuReading(), rss: 0 }
      }
      const waitUntil = async (ms: number) => {
        while (performance.now() - t0 < ms && at().handled < total) await sleep(50)
      }
      const out: Partial<Record<'burst' | 'steady', LatencyResult>> = {}
      for (const name of o.windows) {
        const [from, to] = LATENCY_WINDOWS[name]
        const warmMs = from * durationMs
        const windowMs = (to - from) * durationMs
        await waitUntil(warmMs)
        await fleet.rpc.call('record', { on: true }) // resets what was recorded before
        const a = at()
        await waitUntil(warmMs + windowMs)
        const b = at()
        await fleet.rpc.call('record', { on: false })
        const lat = await fleet.rpc.call<Latency>('latency')
        const lastErrors = [...new Set(hosts.map((h) => relay.stats.snapshot(h).lastError?.message).filter((m): m is string => !!m))].slice(0, 5)
        out[name] = { loadAvg, offeredPerSec: o.rate, warmMs, windowMs, window: windowBetween([], a, b), ...lat, dropped: ingestCounts(relay, hosts).droppedByReason, lastErrors }
        const ms = (x: number | null) => (typeof x === 'number' && Number.isFinite(x) ? `${x.toFixed(1)} ms` : 'n/a') // NaN comes back as null over JSON
        o.log(`    ${o.rate}/s ${name} (${(warmMs / 1000).toFixed(1)}–${((warmMs + windowMs) / 1000).toFixed(1)} s): ${lat.count} events, p50 ${ms(lat.p50)}, p99 ${ms(lat.p99)}`)
      }
      return out
    })
  } finally {
    await fleet.rpc.stop()
  }
}

/**
 * The latency phase: 50 % and 80 % of `maxRate` (phase (a)'s steady rate, or --max-rate), each over the
 * burst and the steady window; without a maximum, today's fixed 2,000/s (the report says so).
 */
export async function runLatencyLevels(o: { params: Partial<CorpusParams>; frames: number; max?: { rate: number; source: 'ingest' | 'flag' }; log: Log }): Promise<LatencyPhase> {
  const levels: LatencyLevel[] = o.max ? [0.5, 0.8].map((fraction) => ({ fraction, rate: Math.round(fraction * o.max!.rate) })) : [{ rate: 2000 }]
  for (const level of levels) {
    o.log(`   ${level.fraction !== undefined ? `${level.fraction * 100} % of ${Math.round(o.max!.rate)}/s` : 'fixed'}: ${level.rate} events/s offered`)
    Object.assign(level, await runLatency({ params: o.params, rate: level.rate, frames: o.frames, windows: ['burst', 'steady'], log: o.log }))
  }
  return o.max ? { maxRate: o.max.rate, source: o.max.source, levels } : { source: 'fallback', levels }
}
