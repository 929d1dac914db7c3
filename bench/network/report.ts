/**
 * The network report (docs/benchmarks-network.md, or scratch/ for a smoke
 * run): targets from issue 15 with met/missed, every figure, and the charts
 * (written next to it as SVG and embedded).
 */
import { existsSync, readFileSync } from 'node:fs'
import type { MachineInfo } from '../suite/machine.js'
import { bucketUpperMs, type LatencySummary } from './latency.js'
import type { ConsumerStats, HostStats, NetworkShape, Sample } from './network.js'
import type { NetworkParams } from './params.js'
import { REAL_DAILY_ACTIVE } from './params.js'
import type { TimelineResult, Window } from './phases.js'
import type { SeedResult } from './seed.js'

export interface NetworkResults {
  stamp: string
  argv: string[]
  params: NetworkParams
  machine: MachineInfo
  shape: NetworkShape
  seed: SeedResult
  relayStartS: number
  firstConnectS: number | null
  timeline?: TimelineResult
  samples: Sample[]
  /** per-second and per-minute latency summaries, t as seconds since the network started */
  seconds: LatencySummary[]
  minutes: LatencySummary[]
  consumer?: ConsumerStats
  hosts?: HostStats
  db?: { dbBytes: number; eventBytes: number; retainedEvents: number; minSeq: number; maxSeq: number; accounts: number }
  small?: { window: Window; peakRssMB: number; rate: number; shape: NetworkShape }
  failures: Record<string, string>
  totalSeconds: number
}

const NOTES = new URL('./notes.md', import.meta.url)

const int = (x: number | undefined | null) => (x !== undefined && x !== null && Number.isFinite(x) ? Math.round(x).toLocaleString('en-US') : 'n/a')
const f1 = (x: number | undefined | null) => (x !== undefined && x !== null && Number.isFinite(x) ? x.toFixed(1) : 'n/a')
const f2 = (x: number | undefined | null) => (x !== undefined && x !== null && Number.isFinite(x) ? x.toFixed(2) : 'n/a')

function verdict(value: number | undefined | null, goal: number, higherIsBetter: boolean): string {
  if (value === undefined || value === null || !Number.isFinite(value)) return '**not measured**'
  const ok = higherIsBetter ? value >= goal : value <= goal
  return ok ? 'met' : `**missed** (${higherIsBetter ? (value / goal).toFixed(2) + '× of' : (value / goal).toFixed(2) + '× the'} target)`
}

/** Least-squares slope of y over t (per second). */
export function slope(points: { t: number; y: number }[]): number {
  const n = points.length
  if (n < 2) return NaN
  const mt = points.reduce((s, p) => s + p.t, 0) / n
  const my = points.reduce((s, p) => s + p.y, 0) / n
  let num = 0
  let den = 0
  for (const p of points) {
    num += (p.t - mt) * (p.y - my)
    den += (p.t - mt) ** 2
  }
  return den > 0 ? num / den : NaN
}

/** RSS slope over the longest stretch of the soak and high phases without a relay restart, after 60 s of warm-up. */
export function rssSlope(r: NetworkResults): { fromS: number; toS: number; pctPerHour: number; mbPerHour: number } | null {
  const tl = r.timeline
  if (!tl) return null
  const soakFrom = tl.phases.find((p) => p.name === 'soak')?.fromS ?? 0
  const end = tl.phases.find((p) => p.name === 'end')?.fromS ?? Infinity
  const outages = [tl.restartStorm, tl.catchUp].filter((x) => x !== undefined).map((x) => ({ down: x.atS, up: x.atS + x.downS }))
  let best: { fromS: number; toS: number } | null = null
  for (const start of [soakFrom, ...outages.map((o) => o.up)]) {
    const from = start + 60
    const to = Math.min(end, ...outages.map((o) => o.down).filter((d) => d > start))
    if (to > from && (!best || to - from > best.toS - best.fromS)) best = { fromS: from, toS: to }
  }
  if (!best) return null
  const pts = r.samples.filter((s) => s.t >= best.fromS && s.t <= best.toS && s.relayUp).map((s) => ({ t: s.t, y: s.rssMB }))
  const perS = slope(pts)
  const mean = pts.reduce((s, p) => s + p.y, 0) / Math.max(1, pts.length)
  return { ...best, mbPerHour: perS * 3600, pctPerHour: (perS * 3600 * 100) / mean }
}

/** Per-minute p99s of minutes wholly inside plain soak time (no restart, catch-up or query phase). */
export function soakMinutes(r: NetworkResults): LatencySummary[] {
  const soak = (r.timeline?.phases ?? []).filter((p) => p.name === 'soak')
  return r.minutes.filter((m) => soak.some((p) => m.t >= p.fromS && m.t + 60 <= p.toS))
}

/** Exact-to-a-bucket (12 %) percentiles of all latencies in the given windows, from the per-second histograms. */
export function mergedLatency(r: NetworkResults, ranges: { fromS: number; toS: number }[]): { n: number; p50: number; p99: number } {
  const h = new Map<number, number>()
  let n = 0
  for (const s of r.seconds) {
    if (!s.h || !ranges.some((x) => s.t >= x.fromS && s.t < x.toS)) continue
    for (const [b, c] of s.h) {
      h.set(b, (h.get(b) ?? 0) + c)
      n += c
    }
  }
  const at = (p: number) => {
    let seen = 0
    for (const [b, c] of [...h].sort((x, y) => x[0] - y[0])) if ((seen += c) >= p * n) return bucketUpperMs(b)
    return NaN
  }
  return { n, p50: at(0.5), p99: at(0.99) }
}

/** p99 of per-second summaries in [a, b] (the worst second's p99 and the median second's). */
function secondsBetween(r: NetworkResults, a: number, b: number): { medianP99: number; worstP99: number; n: number } {
  const xs = r.seconds.filter((s) => s.t >= a && s.t < b && s.n > 0).map((s) => s.p99).sort((x, y) => x - y)
  return { medianP99: xs[Math.floor(xs.length / 2)] ?? NaN, worstP99: xs[xs.length - 1] ?? NaN, n: xs.length }
}

export function renderNetworkReport(r: NetworkResults, charts: { file: string; title: string }[]): string {
  const L: string[] = []
  const tl = r.timeline
  const p = r.params
  const smoke = p.label === 'smoke'
  const peakRss = Math.max(0, ...r.samples.map((s) => s.rssMB))
  const slopeR = rssSlope(r)
  const minutes = soakMinutes(r)
  const halfLoad = mergedLatency(r, (tl?.phases ?? []).filter((x) => x.name === 'soak' || x.name === 'queries'))
  const worstMinuteP99 = minutes.length ? Math.max(...minutes.map((m) => m.p99)) : NaN
  const medianMinuteP99 = minutes.length ? [...minutes.map((m) => m.p99)].sort((a, b) => a - b)[Math.floor(minutes.length / 2)]! : NaN
  const cpuRatio = tl && r.small ? tl.soakSteady.relayUsPerEvent / r.small.window.relayUsPerEvent : NaN
  const rssRatio = r.small ? peakRss / r.small.peakRssMB : NaN
  const catchRatio = tl?.catchUp?.peakRate !== undefined ? tl.catchUp.peakRate / tl.soakRate : NaN
  const lr = tl?.queries?.listRepos
  const soakS = tl ? tl.soak.toS - tl.soak.fromS : NaN
  const plcPerSec = (() => {
    const s = r.samples.filter((x) => x.phase === 'soak')
    const a = s[0]
    const b = s[s.length - 1]
    return a && b && b.t > a.t ? (b.plcResolutions - a.plcResolutions) / (b.t - a.t) : NaN
  })()

  L.push('# Network-scale benchmark')
  L.push('')
  L.push(
    `Generated by \`npm run bench:network${r.argv.length ? ' -- ' + r.argv.join(' ') : ''}\` on ${r.stamp} in ${f1(r.totalSeconds / 60)} min` +
      (smoke ? ' (**smoke run: a validation of the harness at small scale, not a measurement**)' : '') +
      `. Everything on loopback on one machine: the relay (\`node dist/src/cli.js serve\`, its own process), Postgres, ${r.shape.hosts} fake hosts in ${Math.ceil(p.hosts / p.hostsPerChild)} processes, the PLC stand-in and one consumer. ` +
      'Harness: `bench/network/` (see its README).',
  )
  L.push('')
  L.push(`Machine: ${r.machine.cpuModel}, ${r.machine.cores} cores, ${r.machine.ramGiB} GiB, Node ${r.machine.node}, ${r.machine.postgres}.`)
  L.push('')
  L.push('## Targets (issue 15)')
  L.push('')
  L.push('| target | measured | verdict |')
  L.push('| --- | --- | --- |')
  L.push(`| peak RSS ≤ 1 GB (${int(r.shape.hosts)} hosts, ${int(r.shape.seededAccounts + r.shape.activeAccounts)} accounts) | ${f1(peakRss)} MB | ${verdict(peakRss, 1024, false)} |`)
  L.push(`| RSS slope over the soak ≤ 2 %/h | ${slopeR ? `${f2(slopeR.pctPerHour)} %/h (${f1(slopeR.mbPerHour)} MB/h over ${f1((slopeR.toS - slopeR.fromS) / 60)} min without a restart)` : 'n/a'} | ${verdict(slopeR?.pctPerHour, 2, false)}${slopeR && slopeR.toS - slopeR.fromS < 600 ? ' (window too short to mean much)' : ''} |`)
  L.push(`| CPU per event ≤ 1.25 × the small corpus's | ${f1(tl?.soakSteady.relayUsPerEvent)} µs vs ${f1(r.small?.window.relayUsPerEvent)} µs = ${f2(cpuRatio)}× | ${verdict(cpuRatio, 1.25, false)} |`)
  L.push(
    `| p99 latency at half load ≤ 100 ms outside the restart window | p99 ${f1(halfLoad.p99)} ms, p50 ${f1(halfLoad.p50)} ms over ${int(halfLoad.n)} commits of the soak outside the restart and catch-up phases; ` +
      (minutes.length ? `per whole minute: worst p99 ${f1(worstMinuteP99)} ms, median ${f1(medianMinuteP99)} ms (${minutes.length} minutes)` : 'no whole clock minute fell inside one soak stretch') +
      ` | ${verdict(halfLoad.p99, 100, false)} |`,
  )
  L.push(`| restart to full ingest ≤ 60 s with ${int(r.shape.hosts)} hosts | all hosts back ${f1(tl?.restartStorm?.allConnectedS)} s, at rate ${f1(tl?.restartStorm?.backAtRateS)} s after the restart | ${verdict(tl?.restartStorm?.backAtRateS, 60, false)} |`)
  L.push(`| catch-up ≥ 2 × the live rate | ${int(tl?.catchUp?.peakRate)} events/s best 10 s vs ${int(tl?.soakRate)} offered = ${f2(catchRatio)}× | ${verdict(catchRatio, 2, true)} |`)
  L.push(`| every listRepos page within 2 × the first page's time | first ${f1(lr?.firstPageMs)} ms, max ${f1(lr?.maxMs)} ms (${int(lr?.over2xFirst)} of ${int(lr?.pages)} pages over 2×), p99 ${f1(lr?.p99Ms)} ms | ${verdict(lr ? lr.maxMs / lr.firstPageMs : undefined, 2, false)} |`)
  L.push('')
  L.push('## The network')
  L.push('')
  const s = r.shape
  L.push('| | |')
  L.push('| --- | --- |')
  L.push(`| hosts | ${int(s.hosts)} on 127.0.0.1 ports ${p.basePort}–${p.basePort + s.hosts - 1}; a quarter with power-law sizes ⌊C/(i+1)^1.1⌋, three quarters with 1–10 (hostSizes in params.ts): largest ${int(s.largestHost.accounts)}, ${s.hostsOver500k} with ≥ 500k, ${int(s.hostsWith1to10)} with 1–10 |`)
  L.push(`| accounts known at start | ${int(s.seededAccounts)} (rows, heads and cached identities seeded by server-side \`insert … select … from generate_series\`: hosts ${f1(r.seed.seconds.hosts)} s, account ${f1(r.seed.seconds.account)} s, account_head ${f1(r.seed.seconds.head)} s, identity ${f1(r.seed.seconds.identity)} s, then indexes and constraints ${f1(r.seed.seconds.indexes)} s, analyze ${f1(r.seed.seconds.analyze)} s; ${f1(r.seed.dbBytesAfter / 2 ** 20)} MB) |`)
  L.push(`| active accounts | ${int(s.activeAccounts)}, new to the relay: created on their first (Zipf s = ${p.zipf}) pick, so they keep arriving through the run (${int(r.hosts?.created)} created by the end); per host in proportion to its size, at least one |`)
  L.push(`| caches | identity ${int(s.identityCacheSize)} = active × 250,000 / ${int(REAL_DAILY_ACTIVE)} (the default RELAY_IDENTITY_CACHE_SIZE against ~3 M daily-active of ~40 M accounts); ${s.accountCacheSize === undefined ? 'the account cache at its default 100,000 (this run predates RELAY_ACCOUNT_CACHE_SIZE)' : `accounts ${int(s.accountCacheSize)} = active × 100,000 / ${int(REAL_DAILY_ACTIVE)} (RELAY_ACCOUNT_CACHE_SIZE likewise)`} |`)
  L.push(`| events | signed on the fly by the host processes (\`bench/network/fast-repo.ts\`: real MST, secp256k1, Sync 1.1 \`prevData\` and covering proofs), ~98 % #commit, 1.5 % handle changes, 0.5 % deactivate → reactivate, and each new account's #identity/#account/#commit/#sync |`)
  L.push(`| retention | RELAY_EVENT_PARTITION_SIZE ${int(p.partitionSize)}, RELAY_REPLAY_WINDOW ${p.replayWindow}: ${tl?.partitionDrops.length ?? 0} partitions dropped during the run |`)
  L.push('')
  L.push('## Figures')
  L.push('')
  L.push('| | |')
  L.push('| --- | --- |')
  L.push(`| relay start → every host connected | API up ${f1(r.relayStartS)} s, all ${int(s.hosts)} hosts ${f1(r.firstConnectS)} s |`)
  L.push(`| max ingest (short probe) | **${int(tl?.maxRate.eventsPerSec)} events/s**; relay ${f2(tl?.maxRate.relayCores)} cores, host processes ${f2(tl?.maxRate.hostCores)} cores (they sign every commit; same 2 cores) |`)
  L.push(`| soak | ${f1(soakS / 60)} min offered ${int(tl?.soakRate)} events/s: ${int(tl?.soak.eventsPerSec)} events/s at the sequencer overall, ${int(tl?.soakSteady.eventsPerSec)} before the first restart |`)
  L.push(`| CPU per event (soak, before the first restart) | relay ${f1(tl?.soakSteady.relayUsPerEvent)} µs (${f2(tl?.soakSteady.relayCores)} cores); host processes ${f2(tl?.soakSteady.hostCores)} cores |`)
  L.push(`| 90 % phase | offered ${int(tl?.highRate)}: ${int(tl?.high.eventsPerSec)} events/s, relay ${f1(tl?.high.relayUsPerEvent)} µs per event |`)
  L.push(`| small corpus (${r.small ? `${r.small.shape.hosts} hosts, ${int(r.small.shape.seededAccounts)} seeded + ${int(r.small.shape.activeAccounts)} active` : 'n/a'}) at ${int(r.small?.rate)} events/s | ${int(r.small?.window.eventsPerSec)} events/s, relay ${f1(r.small?.window.relayUsPerEvent)} µs per event, peak RSS ${f1(r.small?.peakRssMB)} MB → growth ratios: CPU/event ${f2(cpuRatio)}×, peak RSS ${f2(rssRatio)}× |`)
  if (r.db) {
    L.push(`| database size | ${f1(r.db.dbBytes / 2 ** 20)} MB = ${int(r.db.dbBytes / Math.max(1, r.db.accounts))} B per account (${int(r.db.accounts)} accounts); event log ${f1(r.db.eventBytes / 2 ** 20)} MB for ${int(r.db.retainedEvents)} retained events = ${int(r.db.eventBytes / Math.max(1, r.db.retainedEvents))} B per event |`)
  }
  L.push(`| PLC stand-in resolutions (identity cache misses) | ${f1(plcPerSec)} /s during the soak; ${int(r.samples[r.samples.length - 1]?.plcResolutions)} in the run |`)
  const c = r.consumer
  if (c) {
    L.push(`| consumer stream | ${int(c.received)} messages, ${int(c.commits)} commits of ${int(c.accounts)} accounts, ${c.connects} connections; seq gaps ${c.seqGaps} (${int(c.seqMissing)} seqs missing), seq repeats ${c.seqRepeats}, (did, rev) repeats ${c.revRepeats}, \`since\` ≠ previous rev ${c.sinceMismatches}${c.infoFrames.length ? `; #info: ${[...new Set(c.infoFrames)].join(', ')}` : ''}${c.errorFrames.length ? `; errors: ${[...new Set(c.errorFrames)].join(', ')}` : ''} |`)
  }
  for (const [name, x] of [['restart storm (kill -9, restart at once)', tl?.restartStorm], [`catch-up (kill -9, down ${p.downS} s)`, tl?.catchUp]] as const) {
    if (!x) continue
    L.push(
      `| ${name} | API up ${f1(x.apiUpS)} s, all hosts connected ${f1(x.allConnectedS)} s, ingest ≥ 90 % of offered ${f1(x.backAtRateS)} s, consumer lag < 1 s ${f1(x.lagUnder1sS)} s after the restart` +
        (x.peakRate !== undefined ? `; catch-up ${int(x.peakRate)} events/s best 10 s, ${int(x.meanRateUntilCaughtUp)} mean until caught up (${f2(catchRatio)}× live)` : '') +
        ' |',
    )
  }
  const q = tl?.queries
  if (q) {
    const walk = q.listRepos.complete ? 'full walk' : `walk stopped by its ${q.listRepos.budgetS}-s budget, then ${q.listRepos.sampledPages} pages sampled by cursor up to the last account`
    L.push(`| listRepos (${walk}) | ${int(q.listRepos.repos)} repos in ${int(q.listRepos.pages)} pages of 1,000, ${f1(q.listRepos.seconds)} s; page p50 ${f1(q.listRepos.p50Ms)} ms, p99 ${f1(q.listRepos.p99Ms)}, max ${f1(q.listRepos.maxMs)}; median page time by depth: ${q.listRepos.deciles.map((d) => `${int(d.depth)}: ${f1(d.medianMs)}`).join(', ')} ms |`)
    L.push(`| getHostStatus ${q.getHostStatus.hostname} (${int(q.getHostStatus.accountCount)} accounts) | p50 ${f1(q.getHostStatus.p50Ms)} ms, max ${f1(q.getHostStatus.maxMs)} ms (${q.getHostStatus.count} calls) |`)
    L.push(`| getRepoStatus / getLatestCommit while ingest runs | p50 ${f1(q.getRepoStatus.p50Ms)} / ${f1(q.getLatestCommit.p50Ms)} ms, p99 ${f1(q.getRepoStatus.p99Ms)} / ${f1(q.getLatestCommit.p99Ms)} ms (${q.getRepoStatus.count} each, errors ${q.getRepoStatus.errors}/${q.getLatestCommit.errors}) |`)
  }
  const drops = new Map<number, number>()
  for (const d of tl?.partitionDrops ?? []) drops.set(d.atS, (drops.get(d.atS) ?? 0) + 1)
  for (const [atS, n] of drops) {
    const before = mergedLatency(r, [{ fromS: atS - 32, toS: atS - 2 }])
    const around = mergedLatency(r, [{ fromS: atS - 2, toS: atS + 3 }])
    const worst = secondsBetween(r, atS - 2, atS + 3)
    const phase = tl?.phases.find((x) => atS >= x.fromS && atS < x.toS)?.name ?? '?'
    L.push(
      `| retention: ${n} partition${n > 1 ? 's' : ''} dropped at ${f1(atS / 60)} min (${phase}; seen by the 2-s sampler) | p50/p99 ${f1(before.p50)}/${f1(before.p99)} ms in the 30 s before; ${f1(around.p50)}/${f1(around.p99)} ms in the 5 s around it (worst second p99 ${f1(worst.worstP99)} ms) |`,
    )
  }
  L.push('')
  const f = Object.entries({ ...r.failures, ...(tl?.failures ?? {}) })
  if (f.length) {
    L.push('## Failures')
    L.push('')
    for (const [k, v] of f) L.push(`- **${k}**: \`${v.split('\n')[0]}\``)
    L.push('')
  }
  L.push('## Charts')
  L.push('')
  for (const ch of charts) {
    L.push(`![${ch.title}](${ch.file})`)
    L.push('')
  }
  L.push('Raw samples: `scratch/bench-network/results-<label>.json` (git-ignored); re-render with `npm run bench:network -- --render <file>`.')
  L.push('')
  // Hand-written analysis (bench/network/notes.md), pasted into every report like bench/notes.md.
  if (existsSync(NOTES)) L.push(readFileSync(NOTES, 'utf8').trim(), '')
  return L.join('\n')
}
