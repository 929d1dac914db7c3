/**
 * The run's timeline on one network: warm-up, the max-rate probe, the soak at
 * 50 % (with a kill -9 restart storm, a catch-up after downtime, the query
 * API at scale, and whatever retention drops), then 90 %.
 */
import type { Network, Sample } from './network.js'
import { runQueries, type QueryResults } from './queries.js'

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

export interface Window {
  fromS: number
  toS: number
  events: number
  eventsPerSec: number
  relayCores: number
  relayUsPerEvent: number
  hostCores: number
  peakRssMB: number
}

export function windowOf(samples: Sample[], fromS: number, toS: number): Window {
  const inside = samples.filter((s) => s.t >= fromS && s.t <= toS)
  const a = inside[0]
  const b = inside[inside.length - 1]
  if (!a || !b || b.t <= a.t) return { fromS, toS, events: 0, eventsPerSec: NaN, relayCores: NaN, relayUsPerEvent: NaN, hostCores: NaN, peakRssMB: NaN }
  const dt = b.t - a.t
  const events = b.seq - a.seq
  return {
    fromS: a.t,
    toS: b.t,
    events,
    eventsPerSec: events / dt,
    relayCores: (b.relayCpu - a.relayCpu) / dt,
    relayUsPerEvent: events > 0 ? ((b.relayCpu - a.relayCpu) * 1e6) / events : NaN,
    hostCores: (b.hostCpu - a.hostCpu) / dt,
    peakRssMB: Math.max(...inside.map((s) => s.rssMB)),
  }
}

export interface RestartResult {
  signal: 'SIGKILL' | 'SIGTERM'
  atS: number
  downS: number
  apiUpS: number
  /** From the restart until every host is connected again. */
  allConnectedS: number | null
  /** From the restart until a 5-s window at ≥ 90 % of the offered rate (restart storm) or until consumer lag < 1 s (catch-up). */
  backAtRateS: number | null
  lagUnder1sS: number | null
  /** Catch-up: relay events/s over the best 10 s and from restart until lag < 1 s. */
  peakRate?: number
  meanRateUntilCaughtUp?: number
  backlogEvents?: number
  offeredRate: number
}

export interface TimelineResult {
  warm: Window
  maxRate: Window & { generatorBehind: number }
  soakRate: number
  highRate: number
  soak: Window
  soakSteady: Window
  high: Window
  restartStorm?: RestartResult
  catchUp?: RestartResult
  queries?: QueryResults
  queryWindow?: Window
  partitionDrops: { atS: number }[]
  phases: { name: string; fromS: number; toS: number }[]
  failures: Record<string, string>
}

async function waitFor(net: Network, what: string, ok: (s: Sample) => boolean, deadlineS: number, log: (m: string) => void): Promise<number | null> {
  const t0 = net.elapsed
  while (net.elapsed - t0 < deadlineS) {
    const s = await net.sample()
    if (s && ok(s)) return net.elapsed
    await sleep(500)
  }
  log(`    gave up waiting for ${what} after ${deadlineS} s`)
  return null
}

/** Seq rate over the last `seconds` of samples. */
function recentRate(net: Network, seconds: number): number {
  const s = net.samples
  const b = s[s.length - 1]
  if (!b) return 0
  const a = [...s].reverse().find((x) => x.t <= b.t - seconds)
  return a && b.t > a.t ? (b.seq - a.seq) / (b.t - a.t) : 0
}

/** Kill (or stop) the relay, keep it down `downS`, start it again, and time the way back. */
async function restart(net: Network, signal: 'SIGKILL' | 'SIGTERM', downS: number, offered: number, log: (m: string) => void, catchUp: boolean): Promise<RestartResult> {
  const atS = net.elapsed
  const seqBefore = net.samples[net.samples.length - 1]?.seq ?? 0
  await net.relay.stop(signal)
  net.relayStopped()
  if (downS > 0) await sleep(downS * 1000)
  const t0 = net.elapsed
  const apiUpS = (await net.relay.start()) / 1000
  log(`    relay back (${signal}, down ${downS} s): API up in ${apiUpS.toFixed(1)} s`)
  const hosts = net.params.hosts
  const allAt = await waitFor(net, 'all hosts connected', (s) => s.connectedHosts >= hosts, 600, log)
  const allConnectedS = allAt === null ? null : allAt - t0
  log(`    all ${hosts} hosts connected ${allConnectedS?.toFixed(1) ?? 'never'} s after the restart`)
  // Lag < 1 s: three consecutive seconds whose p99 host→consumer latency is under 1 s.
  const lagOk = () => {
    const xs = net.seconds.filter((x) => net.elapsedOfUnix(x.t) >= t0 && x.n > 0)
    for (let i = 2; i < xs.length; i++) if (xs[i]!.p99 < 1000 && xs[i - 1]!.p99 < 1000 && xs[i - 2]!.p99 < 1000) return xs[i - 2]!.t
    return null
  }
  let lagAt: number | null = null
  let rateAt: number | null = null
  const deadline = t0 + Math.max(600, downS * 4)
  while (net.elapsed < deadline && (lagAt === null || rateAt === null)) {
    await sleep(1000)
    await net.sample()
    if (rateAt === null && recentRate(net, 5) >= 0.9 * offered) rateAt = net.elapsed
    if (lagAt === null) {
      const t = lagOk()
      if (t !== null) lagAt = net.elapsedOfUnix(t)
    }
  }
  const out: RestartResult = {
    signal,
    atS,
    downS,
    apiUpS,
    allConnectedS,
    backAtRateS: rateAt === null ? null : rateAt - t0,
    lagUnder1sS: lagAt === null ? null : Math.max(0, lagAt - t0),
    offeredRate: offered,
  }
  if (catchUp) {
    const after = net.samples.filter((s) => s.t >= t0)
    let peak = 0
    for (const b of after) {
      const a = after.find((x) => x.t >= b.t - 10.5)
      if (a && b.t - a.t >= 8) peak = Math.max(peak, (b.seq - a.seq) / (b.t - a.t))
    }
    out.peakRate = peak
    const end = lagAt ?? net.elapsed
    const last = [...after].reverse().find((s) => s.t <= end) ?? after[after.length - 1]
    const first = after[0]
    if (first && last && last.t > first.t) out.meanRateUntilCaughtUp = (last.seq - first.seq) / (last.t - first.t)
    out.backlogEvents = Math.round(offered * (net.elapsed - atS > 0 ? downS : 0))
    void seqBefore
  }
  log(`    back at rate ${out.backAtRateS?.toFixed(1) ?? 'never'} s, lag < 1 s after ${out.lagUnder1sS?.toFixed(1) ?? 'never'} s`)
  return out
}

export async function runTimeline(net: Network, log: (m: string) => void): Promise<TimelineResult> {
  const p = net.params
  const phases: TimelineResult['phases'] = []
  const failures: Record<string, string> = {}
  const mark = (name: string) => {
    net.phase = name
    const last = phases[phases.length - 1]
    if (last) last.toS = net.elapsed
    phases.push({ name, fromS: net.elapsed, toS: net.elapsed })
  }
  const soakFor = async (untilS: number) => {
    while (net.elapsed < untilS) await sleep(Math.min(1000, (untilS - net.elapsed) * 1000))
  }

  mark('warm')
  await net.setRate(300)
  await soakFor(net.elapsed + p.warmS)
  const warm = windowOf(net.samples, phases[0]!.fromS, net.elapsed)

  mark('max')
  const behind0 = (await net.hostStats()).behind
  await net.setMax(true)
  const maxFrom = net.elapsed
  await soakFor(maxFrom + p.maxRateS)
  const maxRate = { ...windowOf(net.samples, maxFrom + p.maxRateS / 3, net.elapsed), generatorBehind: (await net.hostStats()).behind - behind0 }
  await net.setMax(false)
  log(`  max ingest: ${maxRate.eventsPerSec.toFixed(0)} events/s (relay ${maxRate.relayCores.toFixed(2)} cores, hosts ${maxRate.hostCores.toFixed(2)} cores)`)
  const soakRate = Math.max(50, Math.round(maxRate.eventsPerSec * 0.5))
  const highRate = Math.max(90, Math.round(maxRate.eventsPerSec * 0.9))

  // What the hosts queued in their sockets during the probe drains before the soak starts.
  mark('drain')
  await net.setRate(soakRate)
  const drainFrom = net.elapsed
  while (net.elapsed - drainFrom < 180) {
    await sleep(1000)
    const last = net.seconds.slice(-3)
    if (last.length === 3 && last.every((x) => x.p99 < 1000) && net.elapsedOfUnix(last[0]!.t) > drainFrom) break
  }
  log(`  drained the probe's backlog in ${(net.elapsed - drainFrom).toFixed(0)} s`)

  mark('soak')
  const soakFrom = net.elapsed
  const soakS = p.soakMin * 60
  const at = (f: number) => soakFrom + Math.max(20, f * soakS)
  let restartStorm: RestartResult | undefined
  let catchUp: RestartResult | undefined
  let queries: QueryResults | undefined
  let queryWindow: Window | undefined
  await soakFor(at(0.2))
  const steadyTo = net.elapsed
  try {
    mark('restart-storm')
    log('  restart storm: kill -9')
    restartStorm = await restart(net, 'SIGKILL', 0, soakRate, log, false)
  } catch (err) {
    failures.restartStorm = String((err as Error).stack ?? err)
  }
  mark('soak')
  await soakFor(at(0.4))
  try {
    mark('catch-up')
    log(`  catch-up: relay down ${p.downS} s`)
    catchUp = await restart(net, 'SIGKILL', p.downS, soakRate, log, true)
  } catch (err) {
    failures.catchUp = String((err as Error).stack ?? err)
  }
  mark('soak')
  await soakFor(at(0.7))
  try {
    mark('queries')
    const q0 = net.elapsed
    log('  query API at scale')
    queries = await runQueries(net.relay.apiUrl, net.shape.largestHost.hostname, net.params.accounts, net.params.accounts + net.shape.activeAccounts, Math.min(600, Math.max(60, soakS * 0.25)), log)
    queryWindow = windowOf(net.samples, q0, net.elapsed)
  } catch (err) {
    failures.queries = String((err as Error).stack ?? err)
  }
  mark('soak')
  await soakFor(Math.max(soakFrom + soakS, net.elapsed + 10))
  const soak = windowOf(net.samples, soakFrom, net.elapsed)
  const soakSteady = windowOf(net.samples, soakFrom + 5, steadyTo)

  mark('high')
  await net.setRate(highRate)
  const highFrom = net.elapsed
  await soakFor(highFrom + p.highMin * 60)
  const high = windowOf(net.samples, highFrom + 5, net.elapsed)
  mark('end')
  await net.setRate(0)

  const partitionDrops: { atS: number }[] = []
  for (let i = 1; i < net.samples.length; i++) {
    const n = net.samples[i]!.partitionsDropped - net.samples[i - 1]!.partitionsDropped
    for (let k = 0; k < n; k++) partitionDrops.push({ atS: net.samples[i]!.t })
  }
  return { warm, maxRate, soakRate, highRate, soak, soakSteady, high, restartStorm, catchUp, queries, queryWindow, partitionDrops, phases, failures }
}

/** The small corpus: same harness, warm-up, then the big run's soak rate; CPU per event and peak RSS. */
export async function runSmall(net: Network, rate: number, log: (m: string) => void): Promise<{ window: Window; peakRssMB: number; rate: number }> {
  net.phase = 'small-warm'
  await net.setRate(Math.min(300, rate))
  const t0 = net.elapsed
  while (net.elapsed < t0 + 15) await sleep(1000)
  net.phase = 'small'
  await net.setRate(rate)
  const from = net.elapsed
  while (net.elapsed < from + net.params.small.seconds) await sleep(1000)
  const window = windowOf(net.samples, from + 5, net.elapsed)
  log(`  small corpus at ${rate}/s offered: ${window.eventsPerSec.toFixed(0)} events/s, ${window.relayUsPerEvent.toFixed(0)} µs relay CPU per event`)
  return { window, peakRssMB: Math.max(...net.samples.map((s) => s.rssMB)), rate }
}
