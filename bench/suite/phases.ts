/**
 * The benchmark phases. Each is bounded in time and count, stops by itself,
 * and creates and drops its own database. The relay runs in this process;
 * the fleet, the consumers and the baselines run in child processes.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { sql } from 'kysely'
import type { Relay } from '../../src/relay.js'
import { createPostgresDatabase } from '../../test/helpers/db.js'
import { ensureCorpus, loadHostAccounts } from '../corpus/corpus.js'
import type { CorpusParams } from '../corpus/params.js'
import type { FloorResult } from './floor.js'
import { loadAverage, machineCpu, processCpu } from './machine.js'
import { CpuProfiler, type ProfileSummary } from './profile.js'
import { addHosts, ingestCounts, relayWsUrl, startBenchRelay } from './relay-under-test.js'
import { ChildRpc, runJsonChild } from './rpc.js'

export type Log = (message: string) => void

interface FleetReady {
  /** the real PLC (@did-plc/server) holding the corpus DIDs */
  plcUrl: string
  /** the same documents served statically (what the relay resolves against; see static-plc.ts) */
  staticPlcUrl: string
  hosts: { hostname: string; wsUrl: string; frames: number }[]
  totalFrames: number
}

async function startFleet(params: Partial<CorpusParams>, totalRate: number, log: Log): Promise<{ rpc: ChildRpc; ready: FleetReady }> {
  const rpc = await ChildRpc.start({ script: 'bench/suite/fleet-child.ts', args: [JSON.stringify({ params, totalRate })], log })
  return { rpc, ready: rpc.ready as unknown as FleetReady }
}

/** A relay on a fresh database of `kind`, with the fleet's PLC; everything is torn down after `fn`. */
async function withRelay<T>(
  kind: 'postgres' | 'pglite',
  plcUrl: string,
  fn: (relay: Relay) => Promise<T>,
  plcLimit: 'default' | 'lifted' = 'lifted',
): Promise<T> {
  const pgdb = kind === 'postgres' ? await createPostgresDatabase() : null
  const dataDir = kind === 'pglite' ? mkdtempSync(join(tmpdir(), 'atrelay-bench-pglite-')) : undefined
  let relay: Relay | undefined
  try {
    relay = await startBenchRelay({ ...(pgdb ? { databaseUrl: pgdb.url } : { dataDir }), plcUrl, plcLimit })
    return await fn(relay)
  } finally {
    await relay?.stop()
    await pgdb?.drop()
    if (dataDir) rmSync(dataDir, { recursive: true, force: true })
  }
}

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

// ------------------------------------------------------------------ (a) ingest

export interface Sample {
  t: number
  /** events running / waiting in ingest, waiting in the sequencer */
  inFlight?: number
  queued?: number
  seqQueued?: number
  seq: number
  handled: number
  cpu: number
  machineBusy: number
  rss: number
  /** CPU seconds of this run's Postgres backends (Postgres only) */
  pgCpu?: number
}

export interface WindowStats {
  fromS: number
  toS: number
  events: number
  eventsPerSec: number
  /** relay process CPU cores used (CPU s / wall s) */
  relayCores: number
  /** all cores busy on the machine (everything: relay, Postgres, fleet, other users) */
  machineCores: number
  /** this database's Postgres backends, cores (Postgres only) */
  pgCores?: number
  /** relay process CPU per accepted event, µs */
  relayUsPerEvent?: number
  /** Postgres backend CPU per accepted event, µs */
  pgUsPerEvent?: number
}

export interface IngestResult {
  storage: 'postgres' | 'pglite'
  plcLimit: 'default' | 'lifted'
  loadAvg: [number, number, number]
  totalFrames: number
  completed: boolean
  seconds: number
  accepted: number
  dropped: number
  droppedByReason: Record<string, number>
  /** Distinct last errors recorded per host (why events were dropped). */
  lastErrors: string[]
  storedEvents: number
  steady: WindowStats
  overallEventsPerSec: number
  peakRssMB: number
  startRssMB: number
  profile?: ProfileSummary
  profileWindow?: WindowStats
  /** Where the relay waits, from its own metrics and sampled gauges (whole run). */
  internals: {
    commitMs: number
    batchEvents: number
    verifyMs: number
    avgInFlight: number
    avgQueued: number
    avgSequencerQueued: number
    plcResolutions: number
    plcLimitDelaySeconds: number
  }
  extra?: Record<string, unknown>
}

/** Mean of a prom-client histogram (sum / count), NaN when empty. */
async function histogramMean(relay: Relay, name: string): Promise<number> {
  const metric = relay.registry.getSingleMetric(name)
  if (!metric) return NaN
  let sum = 0
  let count = 0
  for (const v of (await metric.get()).values) {
    const n = (v as { metricName?: string }).metricName ?? ''
    if (n.endsWith('_sum')) sum += v.value
    else if (n.endsWith('_count')) count += v.value
  }
  return count > 0 ? sum / count : NaN
}

/** Sum of a counter over all its labels. */
async function counterSum(relay: Relay, name: string): Promise<number> {
  const metric = relay.registry.getSingleMetric(name)
  if (!metric) return NaN
  return (await metric.get()).values.reduce((n, v) => n + v.value, 0)
}

function average(samples: Sample[], pick: (s: Sample) => number | undefined): number {
  const xs = samples.map(pick).filter((x): x is number => x !== undefined)
  return xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : NaN
}

function windowBetween(samples: Sample[], a: Sample, b: Sample): WindowStats {
  void samples
  const dt = b.t - a.t
  const events = b.seq - a.seq
  const w: WindowStats = {
    fromS: a.t,
    toS: b.t,
    events,
    eventsPerSec: dt > 0 ? events / dt : 0,
    relayCores: dt > 0 ? (b.cpu - a.cpu) / dt : 0,
    machineCores: dt > 0 ? (b.machineBusy - a.machineBusy) / dt : 0,
    relayUsPerEvent: events > 0 ? ((b.cpu - a.cpu) * 1e6) / events : NaN,
  }
  if (a.pgCpu !== undefined && b.pgCpu !== undefined) {
    w.pgCores = dt > 0 ? (b.pgCpu - a.pgCpu) / dt : 0
    w.pgUsPerEvent = events > 0 ? ((b.pgCpu - a.pgCpu) * 1e6) / events : NaN
  }
  return w
}

/** CPU seconds (user + system) of processes by pid, from /proc (Linux); missing pids count 0. */
function procCpuSeconds(pids: readonly number[]): number {
  let ticks = 0
  for (const pid of pids) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
      ticks += Number(f[11]) + Number(f[12])
    } catch {
      // gone
    }
  }
  return ticks / 100
}

/** The backends serving this database, with the CPU they had when first seen (so a pid that goes away does not make the sum jump). */
class PgBackendCpu {
  private readonly seen = new Map<number, { base: number; last: number }>()
  private retired = 0
  constructor(private readonly relay: Relay) {}
  async refresh(): Promise<void> {
    if (this.relay.storage.kind !== 'postgres') return
    const r = await sql<{ pid: number }>`select pid from pg_stat_activity where datname = current_database()`.execute(this.relay.storage.db)
    for (const { pid } of r.rows) {
      if (this.seen.has(pid)) continue
      const now = procCpuSeconds([pid])
      this.seen.set(pid, { base: now, last: now })
    }
  }
  /** CPU seconds used by the backends since they were first seen (a backend that exits keeps its share). */
  read(): number | undefined {
    if (this.relay.storage.kind !== 'postgres') return undefined
    let total = this.retired
    for (const [pid, e] of this.seen) {
      const now = procCpuSeconds([pid])
      if (now === 0) {
        this.retired += e.last - e.base
        total += e.last - e.base
        this.seen.delete(pid)
        continue
      }
      e.last = now
      total += now - e.base
    }
    return total
  }
}

function firstAtLeast(samples: Sample[], handled: number): Sample {
  return samples.find((s) => s.handled >= handled) ?? samples[samples.length - 1]!
}

export interface IngestOptions {
  kind: 'postgres' | 'pglite'
  params: Partial<CorpusParams>
  deadlineMs: number
  /** Profile the relay between 55 % and 95 % of the corpus (the rate is then measured over 10–55 %). */
  profileFile?: string
  /** Runs after the relay started and before hosts are added (seeding, cache warming). */
  beforeHosts?: (relay: Relay) => Promise<Record<string, unknown>>
  /** The relay's outbound PLC rate limit (default: lifted, see startBenchRelay). */
  plcLimit?: 'default' | 'lifted'
  log: Log
}

/** The fleet offers every frame as fast as the relay reads; accepted events/s at the sequencer. */
export async function runIngest(o: IngestOptions): Promise<IngestResult> {
  const loadAvg = loadAverage()
  const fleet = await startFleet(o.params, 0, o.log)
  try {
    const plcLimit = o.plcLimit ?? 'lifted'
    return await withRelay(o.kind, fleet.ready.staticPlcUrl, async (relay) => {
      const extra = o.beforeHosts ? await o.beforeHosts(relay) : undefined
      const hosts = fleet.ready.hosts.map((h) => h.hostname)
      const total = fleet.ready.totalFrames
      const samples: Sample[] = []
      const t0 = performance.now()
      const sample = (): Sample => {
        const c = ingestCounts(relay, hosts)
        const s: Sample = {
          t: (performance.now() - t0) / 1000,
          seq: relay.sequencer.currentSeq(),
          handled: c.accepted + c.dropped,
          cpu: processCpu(),
          machineBusy: machineCpu().busy,
          rss: process.memoryUsage.rss(),
          inFlight: relay.ingest.inFlight,
          queued: relay.ingest.queued,
          seqQueued: relay.sequencer.queuedEvents(),
        }
        const pgCpu = pg.read()
        if (pgCpu !== undefined) s.pgCpu = pgCpu
        samples.push(s)
        return s
      }
      const startRss = process.memoryUsage.rss()
      const pg = new PgBackendCpu(relay)
      await pg.refresh()
      sample()
      await addHosts(relay, hosts)
      const profiler = o.profileFile ? new CpuProfiler() : null
      let profiling: 'before' | 'on' | 'done' = 'before'
      let profile: ProfileSummary | undefined
      let lastLog = 0
      for (let n = 0; ; n++) {
        await sleep(100)
        if (n % 10 === 0) await pg.refresh()
        const s = sample()
        if (profiler && profiling === 'before' && s.handled >= 0.55 * total) {
          await profiler.start()
          profiling = 'on'
        } else if (profiler && profiling === 'on' && s.handled >= 0.95 * total) {
          profile = await profiler.stop(o.profileFile!)
          profiling = 'done'
        }
        if (s.t - lastLog >= 5) {
          lastLog = s.t
          o.log(`    ${o.kind}: ${s.handled}/${total} handled, seq ${s.seq}, ${s.t.toFixed(0)} s`)
        }
        if (s.handled >= total || performance.now() - t0 > o.deadlineMs) break
      }
      if (profiler && profiling === 'on') profile = await profiler.stop(o.profileFile!)
      const last = samples[samples.length - 1]!
      const counts = ingestCounts(relay, hosts)
      const stored = await sql<{ n: number }>`select count(*)::int as n from event`.execute(relay.storage.db)
      const steady = o.profileFile
        ? windowBetween(samples, firstAtLeast(samples, 0.1 * total), firstAtLeast(samples, 0.55 * total))
        : windowBetween(samples, firstAtLeast(samples, 0.1 * total), firstAtLeast(samples, 0.9 * total))
      const firstEvent = samples.find((s) => s.seq > 0) ?? samples[0]!
      const result: IngestResult = {
        storage: o.kind,
        plcLimit,
        loadAvg,
        totalFrames: total,
        completed: last.handled >= total,
        seconds: last.t,
        accepted: counts.accepted,
        dropped: counts.dropped,
        droppedByReason: counts.droppedByReason,
        lastErrors: [...new Set(hosts.map((h) => relay.stats.snapshot(h).lastError?.message).filter((m): m is string => !!m))].slice(0, 5),
        storedEvents: stored.rows[0]?.n ?? -1,
        steady,
        overallEventsPerSec: last.t > firstEvent.t ? (last.seq - firstEvent.seq) / (last.t - firstEvent.t) : 0,
        peakRssMB: Math.max(...samples.map((s) => s.rss)) / 2 ** 20,
        startRssMB: startRss / 2 ** 20,
        internals: {
          commitMs: (await histogramMean(relay, 'relay_sequencer_commit_seconds')) * 1000,
          batchEvents: await histogramMean(relay, 'relay_sequencer_batch_events'),
          verifyMs: (await histogramMean(relay, 'relay_ingest_verify_seconds')) * 1000,
          avgInFlight: average(samples, (s) => s.inFlight),
          avgQueued: average(samples, (s) => s.queued),
          avgSequencerQueued: average(samples, (s) => s.seqQueued),
          plcResolutions: await counterSum(relay, 'relay_identity_resolutions_total'),
          plcLimitDelaySeconds: await counterSum(relay, 'relay_identity_rate_limit_delay_seconds_total'),
        },
      }
      if (profile) {
        result.profile = profile
        result.profileWindow = windowBetween(samples, firstAtLeast(samples, 0.55 * total), firstAtLeast(samples, 0.95 * total))
      }
      if (extra) result.extra = extra
      return result
    }, plcLimit)
  } finally {
    await fleet.rpc.stop()
  }
}

// ---------------------------------------------------------------- (b) latency

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
 * frames each committed batch once and writes it to every live socket: the fan-out cost
 * itself, without the ingest work around it. Measurement only.
 */
function instrumentBroadcast(relay: Relay): { cpuSeconds: () => number } {
  const fh = relay.firehose as unknown as { broadcast?: (events: unknown[]) => void }
  const original = fh.broadcast
  if (typeof original !== 'function') throw new Error('bench: Firehose.broadcast not found; cannot instrument fan-out')
  let total = 0
  fh.broadcast = function (this: unknown, events: unknown[]) {
    const t0 = process.cpuUsage()
    try {
      original.call(this, events)
    } finally {
      const d = process.cpuUsage(t0)
      total += (d.user + d.system) / 1e6
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
