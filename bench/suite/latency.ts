/** (b) Latency, host send → consumer receive, at a fixed offered rate. */
import { setTimeout as sleep } from 'node:timers/promises'
import type { CorpusParams } from '../corpus/params.js'
import { startFleet, windowBetween, withRelay, type Log, type Sample, type WindowStats } from './harness.js'
import { loadAverage, machineCpu, processCpu } from './machine.js'
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

export type LatencyOptions = { params: Partial<CorpusParams>; rate: number; warmMs: number; windowMs: number; log: Log }

export async function runLatency(o: LatencyOptions): Promise<LatencyResult> {
  const loadAvg = loadAverage()
  const fleet = await startFleet(o.params, o.rate, o.log)
  try {
    return await withRelay('postgres', fleet.ready.staticPlcUrl, async (relay) => {
      const hosts = fleet.ready.hosts.map((h) => h.hostname)
      const total = fleet.ready.totalFrames
      await fleet.rpc.call('probe', { url: relayWsUrl(relay) })
      await addHosts(relay, hosts)
      const t0 = performance.now()
      const at = (): Sample => {
        const c = ingestCounts(relay, hosts)
        return { t: (performance.now() - t0) / 1000, seq: relay.sequencer.currentSeq(), handled: c.accepted + c.dropped, cpu: processCpu(), machineBusy: machineCpu().busy, rss: 0 }
      }
      const waitFor = async (ms: number) => {
        const end = performance.now() + ms
        while (performance.now() < end && at().handled < total) await sleep(50)
      }
      await waitFor(o.warmMs)
      await fleet.rpc.call('record', { on: true })
      const a = at()
      await waitFor(o.windowMs)
      const b = at()
      await fleet.rpc.call('record', { on: false })
      const lat = await fleet.rpc.call<Omit<LatencyResult, 'loadAvg' | 'offeredPerSec' | 'window' | 'dropped'>>('latency')
      const lastErrors = [...new Set(hosts.map((h) => relay.stats.snapshot(h).lastError?.message).filter((m): m is string => !!m))].slice(0, 5)
      return { loadAvg, offeredPerSec: o.rate, warmMs: o.warmMs, windowMs: o.windowMs, window: windowBetween([], a, b), ...lat, dropped: ingestCounts(relay, hosts).droppedByReason, lastErrors }
    })
  } finally {
    await fleet.rpc.stop()
  }
}

