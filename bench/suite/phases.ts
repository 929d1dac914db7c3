/**
 * The benchmark phases. Each is bounded in time and count, stops by itself,
 * and creates and drops its own database. The relay runs in this process;
 * the fleet, the consumers and the baselines run in child processes.
 * Ingest is in ingest.ts, latency in latency.ts, what they share in harness.ts.
 */
import { setTimeout as sleep } from 'node:timers/promises'
import type { Relay } from '../../src/relay.js'
import { ensureCorpus, loadHostAccounts } from '../corpus/corpus.js'
import type { CorpusParams } from '../corpus/params.js'
import type { FloorResult } from './floor.js'
import { startFleet, withRelay, type Log, type WindowStats } from './harness.js'
import { loadAverage, machineCpu, processCpu } from './machine.js'
import { addHosts, relayWsUrl } from './relay-under-test.js'
import { ChildRpc, runJsonChild } from './rpc.js'

// ------------------------------------------------------------------ (e) floor

export interface FloorPhase extends FloorResult {
  loadAvg: [number, number, number]
}

export async function runFloor(params: Partial<CorpusParams>, log: Log): Promise<FloorPhase> {
  const loadAvg = loadAverage()
  const r = await runJsonChild<FloorResult>({ script: 'bench/suite/floor.ts', args: [JSON.stringify(params)], timeoutMs: 300_000, log })
  return { ...r, loadAvg }
}

// -------------------------------------------------------------- (e) reference

export interface ReferenceResult {
  loadAvg: [number, number, number]
  host: string
  syncVersion: string
  frames: number
  complete: boolean
  events: number
  errors: number
  errorSamples: string[]
  seconds: number
  framesPerSec: number
  cpuSeconds: number
  framesPerCpuSecond: number
}

export async function runReference(params: Partial<CorpusParams>, timeoutMs: number, log: Log): Promise<ReferenceResult> {
  const loadAvg = loadAverage()
  const corpus = await ensureCorpus({ params })
  const fleet = await startFleet(params, 0, log)
  try {
    const host = fleet.ready.hosts[0]!
    const dids = loadHostAccounts(corpus, corpus.manifest.hosts[0]!).map((a) => a.did)
    const r = await runJsonChild<Omit<ReferenceResult, 'loadAvg' | 'host'>>({
      script: 'bench/suite/reference.mjs',
      args: [JSON.stringify({ wsUrl: host.wsUrl, plcUrl: fleet.ready.plcUrl, frames: host.frames, dids, timeoutMs })],
      timeoutMs: timeoutMs + 60_000,
      log,
    })
    return { ...r, loadAvg, host: host.hostname }
  } finally {
    await fleet.rpc.stop()
  }
}

// ---------------------------------------------------------------- (c) fan-out

export interface FanoutStep {
  consumers: number
  window: WindowStats
  relayCpuSeconds: number
  /** relay CPU per event (µs), all consumers included */
  usPerEvent: number
  /** relay CPU per event per consumer (µs): total / (events × consumers) */
  usPerEventPerConsumer: number
  /** (per-event CPU with N consumers − with none) / N (µs) */
  marginalUsPerEventPerConsumer: number
  messagesDelivered: number
  expectedMessages: number
  consumerChildCores: number
  /** relay CPU spent inside Firehose.broadcast (framing + writes to every live socket), µs per event per consumer */
  broadcastUsPerEventPerConsumer: number
  /** the same, µs per event (all consumers) */
  broadcastUsPerEvent: number
}

/**
 * Accumulates the process CPU time spent inside the firehose's (private) broadcast, which
 * frames each committed batch once, and its fanOut, which writes the held batches to every
 * live socket (from broadcast, or from the pacing timer, live-batch.ts): the fan-out cost
 * itself, without the ingest work around it. Measurement only.
 */
function instrumentBroadcast(relay: Relay): { cpuSeconds: () => number } {
  const fh = relay.firehose as unknown as Record<'broadcast' | 'fanOut', ((entries: unknown[]) => void) | undefined>
  let total = 0
  let depth = 0
  for (const name of ['broadcast', 'fanOut'] as const) {
    const original = fh[name]
    if (typeof original !== 'function') throw new Error(`bench: Firehose.${name} not found; cannot instrument fan-out`)
    fh[name] = function (this: unknown, entries: unknown[]) {
      // fanOut runs inside broadcast when nothing is held: count the outermost call only.
      const t0 = depth++ === 0 ? process.cpuUsage() : undefined
      try {
        original.call(this, entries)
      } finally {
        depth--
        if (t0 !== undefined) {
          const d = process.cpuUsage(t0)
          total += (d.user + d.system) / 1e6
        }
      }
    }
  }
  return { cpuSeconds: () => total }
}

export interface FanoutResult {
  loadAvg: [number, number, number]
  offeredPerSec: number
  steps: FanoutStep[]
  consumersOpenAtEnd: number
  consumersClosed: (number | null)[]
  errorFrames: number
  cutOff: Record<string, number>
}

interface ConsumerStats {
  consumers: number
  open: number
  closed: (number | null)[]
  errorFrames: number
  totalMessages: number
  cpu: { user: number; system: number }
}

export async function runFanout(o: { params: Partial<CorpusParams>; rate: number; counts: number[]; warmMs: number; windowMs: number; log: Log }): Promise<FanoutResult> {
  const loadAvg = loadAverage()
  const fleet = await startFleet(o.params, o.rate, o.log)
  const consumers = await ChildRpc.start({ script: 'bench/suite/consumers-child.ts', log: o.log })
  try {
    return await withRelay('postgres', fleet.ready.staticPlcUrl, async (relay) => {
      const hosts = fleet.ready.hosts.map((h) => h.hostname)
      const broadcast = instrumentBroadcast(relay)
      await addHosts(relay, hosts)
      await sleep(o.warmMs)
      const steps: FanoutStep[] = []
      let base = 0
      for (const n of [0, ...o.counts]) {
        const have = steps.length ? steps[steps.length - 1]!.consumers : 0
        if (n > have) {
          await consumers.call('connect', { url: relayWsUrl(relay), count: n - have })
          await sleep(500)
        }
        const c0 = await consumers.call<ConsumerStats>('stats')
        const seq0 = relay.sequencer.currentSeq()
        const cpu0 = processCpu()
        const b0 = broadcast.cpuSeconds()
        const m0 = machineCpu().busy
        const t0 = performance.now()
        await sleep(o.windowMs)
        const seq1 = relay.sequencer.currentSeq()
        const cpu1 = processCpu()
        const b1 = broadcast.cpuSeconds()
        const dt = (performance.now() - t0) / 1000
        const m1 = machineCpu().busy
        await sleep(200) // let in-flight messages land before counting them
        const c1 = await consumers.call<ConsumerStats>('stats')
        const events = seq1 - seq0
        const cpu = cpu1 - cpu0
        const usPerEvent = events > 0 ? (cpu * 1e6) / events : NaN
        if (n === 0) base = usPerEvent
        const childCpu = (c1.cpu.user + c1.cpu.system - c0.cpu.user - c0.cpu.system) / 1e6
        steps.push({
          consumers: n,
          window: { fromS: 0, toS: dt, events, eventsPerSec: events / dt, relayCores: cpu / dt, machineCores: (m1 - m0) / dt },
          relayCpuSeconds: cpu,
          usPerEvent,
          usPerEventPerConsumer: n > 0 ? usPerEvent / n : NaN,
          marginalUsPerEventPerConsumer: n > 0 ? (usPerEvent - base) / n : NaN,
          messagesDelivered: c1.totalMessages - c0.totalMessages,
          expectedMessages: events * n,
          consumerChildCores: childCpu / dt,
          broadcastUsPerEvent: events > 0 ? ((b1 - b0) * 1e6) / events : NaN,
          broadcastUsPerEventPerConsumer: events > 0 && n > 0 ? ((b1 - b0) * 1e6) / (events * n) : NaN,
        })
        o.log(`    ${n} consumers: ${events} events in ${dt.toFixed(1)} s, relay ${(cpu / dt).toFixed(2)} cores, ${usPerEvent.toFixed(0)} µs/event`)
      }
      const end = await consumers.call<ConsumerStats>('stats')
      const cutOff: Record<string, number> = {}
      const metric = relay.registry.getSingleMetric('relay_firehose_consumers_cut_off_total')
      if (metric) for (const v of (await metric.get()).values) cutOff[String(v.labels.reason)] = v.value
      return { loadAvg, offeredPerSec: o.rate, steps, consumersOpenAtEnd: end.open, consumersClosed: end.closed, errorFrames: end.errorFrames, cutOff }
    })
  } finally {
    await consumers.stop()
    await fleet.rpc.stop()
  }
}
