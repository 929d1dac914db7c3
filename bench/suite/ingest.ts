/**
 * (a) Maximum sustained ingest: the fleet offers every frame as fast as the
 * relay reads it; rate and CPU per accepted event over a steady window.
 */
import { readFileSync } from 'node:fs'
import { setTimeout as sleep } from 'node:timers/promises'
import { sql } from 'kysely'
import type { Relay } from '../../src/relay.js'
import type { CorpusParams } from '../corpus/params.js'
import { startFleet, windowBetween, withRelay, type Log, type Sample, type WindowStats } from './harness.js'
import { CLK_TCK, cpuReading, loadAverage } from './machine.js'
import { CpuProfiler, type ProfileSummary } from './profile.js'
import { addHosts, benchRelayVerifyWorkers, ingestCounts } from './relay-under-test.js'

export interface IngestResult {
  storage: 'postgres' | 'pglite'
  plcLimit: 'default' | 'lifted'
  /** verify worker threads the relay ran with (0 = inline) */
  verifyWorkers?: number
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
  return ticks / CLK_TCK
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
  /** RELAY_VERIFY_WORKERS for this run (default: the relay's own default, or the bench's environment) */
  verifyWorkers?: number
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
          ...cpuReading(),
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
        verifyWorkers: benchRelayVerifyWorkers(relay),
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
    }, plcLimit, o.verifyWorkers !== undefined ? { RELAY_VERIFY_WORKERS: String(o.verifyWorkers) } : undefined)
  } finally {
    await fleet.rpc.stop()
  }
}


// ------------------------------------------------- (a) scaling with verify workers

export interface WorkersResult {
  cores: number
  /** one ingest run (Postgres) per worker count, 0 (inline) to cores + 1 */
  runs: IngestResult[]
}

/** The Postgres ingest phase once per RELAY_VERIFY_WORKERS = 0 … `max`: how the relay scales with cores. */
export async function runWorkers(o: Omit<IngestOptions, 'kind' | 'verifyWorkers' | 'profileFile'> & { max: number; cores: number }): Promise<WorkersResult> {
  const runs: IngestResult[] = []
  for (let n = 0; n <= o.max; n++) {
    o.log(`    RELAY_VERIFY_WORKERS=${n}`)
    runs.push(await runIngest({ ...o, kind: 'postgres', verifyWorkers: n }))
  }
  return { cores: o.cores, runs }
}
