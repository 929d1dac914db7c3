/**
 * `npm run bench:attacks`: hostile input against the relay while an honest
 * host fleet streams real signed commits (the bench corpus) at a steady
 * rate and one consumer reads the firehose, measuring host send → consumer
 * receive latency. Each phase gets a fresh relay process (`dist/`, build
 * first) on a fresh Postgres database and a fresh fleet; loopback only.
 *
 *   bomb   a hostile host sends 5 #info then 5 #commit frames whose body is a ~4.9-million-deep nested array,
 *          one at a time, paced by the relay (see attacks/bomb.ts), for at most 150 s
 *   query  2,000 concurrent listRepos?limit=1000 from one client (4,000 seeded accounts + the corpus's)
 *   crawl  500 concurrent requestCrawl for 500 new hostnames that answer nothing (localhost:<closed port>)
 *
 * Every phase: 40 s warm-up, a baseline window, then the attack window (bounded), each with honest latency
 * (#commits sent in the window; those not received 3 s after it closes count as not forwarded), /xrpc/_health
 * every 100 ms (2 s timeout), and relay RSS. Attackers use source address 127.0.0.2, apart from the
 * health poller and the consumer (127.0.0.1); 429 answers are counted apart from errors.
 *
 *   npm run build && npm run bench:attacks -- --label before|after [--only bomb,query,crawl]
 * Prints JSON and a markdown table; writes scratch/bench/attacks-<label>.{json,md} (relay logs: attacks-relay-<phase>.log).
 */
import { execFileSync } from 'node:child_process'
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { ensureCorpus } from './corpus/corpus.js'
import { DEFAULT_PARAMS } from './corpus/params.js'
import { loadAverage } from './suite/machine.js'
import { ChildRpc, runJsonChild } from './suite/rpc.js'
import { BombHost, type BombDelivery, type BombHostStats } from './attacks/bomb.js'
import type { BurstResult } from './attacks/burst-child.js'
import { closedLocalPorts } from './attacks/ports.js'
import { RelayMonitor, type HealthSummary, type RssSummary } from './attacks/monitor.js'
import { RelayProcess } from './attacks/relay-process.js'
import { renderMarkdown } from './attacks/report.js'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const OUT = join(ROOT, 'scratch/bench')
const PHASES = ['bomb', 'query', 'crawl'] as const
type Phase = (typeof PHASES)[number]

const HONEST_RATE = 200 // events/s over the whole fleet
/** The corpus creates its accounts in the first ~40 s at this rate (#identity + #account per account); measure after that. */
const WARM_MS = 40_000
const BASELINE_MS = 10_000
/** After a window closes, how long its last events may still take to arrive. */
const GRACE_MS = 3_000
/** Attack windows end this long after the attack did (recovery is inside the window). */
const SETTLE_MS = 5_000
const ATTACKER = '127.0.0.2'
const SEEDED_ACCOUNTS = 4_000

export interface HonestLatency {
  sent: number
  received: number
  notForwarded: number
  p50: number
  p99: number
  max: number
  probeErrors: string[]
}

export interface WindowResult {
  seconds: number
  honest: HonestLatency
  health: HealthSummary
  rss: RssSummary
}

export interface PhaseResult {
  phase: Phase
  loadAvgStart: [number, number, number]
  loadAvgEnd: [number, number, number]
  baseline: WindowResult
  attack: WindowResult
  relayAlive: boolean
  /** relay RSS at the end of the phase (after SETTLE_MS and GRACE_MS) */
  rssEndMB: number
  /** relay drop/rejection counters that moved (Prometheus), name{labels} → value */
  counters: Record<string, number>
  bomb?: { host: BombHostStats; deliveries: BombDelivery[]; relayView: unknown }
  burst?: BurstResult
}

export interface AttacksReport {
  label: string
  stamp: string
  commit: string
  loadAvgStart: [number, number, number]
  loadAvgEnd: [number, number, number]
  honestRate: number
  phases: PhaseResult[]
  failures: Record<string, string>
  totalSeconds: number
}

type Log = (m: string) => void

interface Rig {
  relay: RelayProcess
  monitor: RelayMonitor
  fleet: ChildRpc
}

/** Runs `attack` in an honest-latency window that closes SETTLE_MS after it returns. */
async function measure<T>(rig: Rig, run: () => Promise<T>, settleMs: number): Promise<{ window: WindowResult; value: T }> {
  await rig.fleet.call('window', { on: true })
  const from = rig.monitor.now()
  const value = await run()
  await sleep(settleMs)
  const to = rig.monitor.now()
  await rig.fleet.call('window', { on: false })
  await sleep(GRACE_MS)
  const honest = await rig.fleet.call<HonestLatency>('windowLatency')
  const r = (x: number) => Math.round(x)
  return {
    value,
    window: {
      seconds: Math.round((to - from) / 100) / 10,
      honest: { ...honest, p50: r(honest.p50), p99: r(honest.p99), max: r(honest.max) },
      health: rig.monitor.health(from, to),
      rss: rig.monitor.rssBetween(from, to),
    },
  }
}

async function runPhase(phase: Phase, log: Log): Promise<PhaseResult> {
  const loadAvgStart = loadAverage()
  const fleet = await ChildRpc.start({ script: 'bench/suite/fleet-child.ts', args: [JSON.stringify({ params: DEFAULT_PARAMS, totalRate: HONEST_RATE })], log })
  let relay: RelayProcess | undefined
  let monitor: RelayMonitor | undefined
  let bombHost: BombHost | undefined
  try {
    const ready = fleet.ready as unknown as { staticPlcUrl: string; hosts: { hostname: string }[] }
    relay = await RelayProcess.start({ root: ROOT, plcUrl: ready.staticPlcUrl, logFile: join(OUT, `attacks-relay-${phase}.log`) })
    monitor = new RelayMonitor(relay)
    const rig: Rig = { relay, monitor, fleet }
    if (phase === 'query') await relay.seedAccounts(SEEDED_ACCOUNTS)
    await fleet.call('probe', { url: relay.firehoseUrl })
    const admitStart = performance.now()
    await Promise.all(ready.hosts.map((h) => relay!.addHost(h.hostname, log)))
    log(`   ${ready.hosts.length} honest hosts admitted in ${Math.round((performance.now() - admitStart) / 1000)} s at ${HONEST_RATE} events/s; warming up`)
    await sleep(WARM_MS)
    const baseline = (await measure(rig, () => sleep(BASELINE_MS), 0)).window
    log(`   baseline: honest p50 ${baseline.honest.p50} ms, p99 ${baseline.honest.p99} ms, health max ${baseline.health.maxMs} ms`)
    const result: Omit<PhaseResult, 'attack' | 'loadAvgEnd' | 'relayAlive' | 'rssEndMB' | 'counters'> = { phase, loadAvgStart, baseline }
    let attack: WindowResult
    if (phase === 'bomb') {
      const host = await BombHost.start()
      bombHost = host
      await relay.addHost(host.hostname, log)
      if (!(await host.subscribed(30_000))) throw new Error('the relay did not subscribe to the bomb host within 30 s')
      const m = await measure(rig, () => host.run({ count: 5, counted: bombCounter(rig.relay, host.hostname), handledWaitMs: 20_000, reconnectWaitMs: 30_000, deadlineMs: 150_000 }), SETTLE_MS)
      attack = m.window
      const hosts = await relay.admin<{ hosts: { hostname: string }[] }>('GET', 'hosts').catch((err: Error) => ({ hosts: [], error: err.message }))
      result.bomb = { host: host.stats(), deliveries: m.value, relayView: hosts.hosts.find((h) => h.hostname === host.hostname) ?? hosts }
    } else {
      const burst = phase === 'query' ? queryBurst(relay) : await crawlBurst(relay)
      const m = await measure(rig, () => runJsonChild<BurstResult>({ script: 'bench/attacks/burst-child.ts', args: [JSON.stringify(burst)], timeoutMs: 150_000, log }), SETTLE_MS)
      attack = m.window
      result.burst = m.value
    }
    log(`   attack: honest p50 ${attack.honest.p50} ms, p99 ${attack.honest.p99} ms, not forwarded ${attack.honest.notForwarded}; health max ${attack.health.maxMs} ms`)
    const counters = relay.alive ? await relay.metrics(/drop|reject|refus|cut_off|rate_limit|admission|error/i).catch(() => ({})) : {}
    return { ...result, attack, relayAlive: relay.alive, rssEndMB: relay.rssMB(), counters, loadAvgEnd: loadAverage() }
  } finally {
    await monitor?.stop()
    await bombHost?.close()
    await relay?.stop()
    await fleet.stop()
  }
}

/** Frames of `hostname` the relay has counted (received + dropped); while it does not answer within 1 s, its last answer. */
function bombCounter(relay: RelayProcess, hostname: string): () => Promise<number> {
  let last = 0
  return async () => {
    try {
      const { hosts } = await relay.admin<{ hosts: { hostname: string; events: { received: number; dropped: Record<string, number> } }[] }>('GET', 'hosts', undefined, 1000)
      const e = hosts.find((h) => h.hostname === hostname)?.events
      if (e) last = e.received + Object.values(e.dropped).reduce((a, b) => a + b, 0)
    } catch {
      // blocked or busy: keep the last count
    }
    return last
  }
}

/** 2,000 concurrent full pages of listRepos. */
function queryBurst(relay: RelayProcess): unknown {
  return { url: relay.url, localAddress: ATTACKER, timeoutMs: 120_000, repeat: { count: 2000, method: 'GET', path: '/xrpc/com.atproto.sync.listRepos?limit=1000' } }
}

/** 500 concurrent requestCrawl, each for a new hostname nothing listens on (refused at once on loopback: no traffic leaves the machine). */
async function crawlBurst(relay: RelayProcess): Promise<unknown> {
  const ports = await closedLocalPorts(500, 41_000)
  return {
    url: relay.url,
    localAddress: ATTACKER,
    timeoutMs: 120_000,
    requests: ports.map((port) => ({ method: 'POST', path: '/xrpc/com.atproto.sync.requestCrawl', body: { hostname: `localhost:${port}` } })),
  }
}

function execGit(args: string[]): string {
  return execFileSync('git', args, { cwd: ROOT, encoding: 'utf8' }).trim()
}

function gitCommit(): string {
  try {
    return execGit(['rev-parse', '--short', 'HEAD']) + (execGit(['status', '--porcelain', '--untracked-files=no', '--', 'src']) ? '+dirty' : '')
  } catch {
    return 'unknown'
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { label: { type: 'string', default: 'run' }, only: { type: 'string' } } })
  const label = values.label!
  const only = (values.only ?? PHASES.join(',')).split(',').map((s) => s.trim()) as Phase[]
  for (const p of only) if (!PHASES.includes(p)) throw new Error(`unknown phase ${p}; phases: ${PHASES.join(', ')}`)
  const log: Log = (m) => console.error(m)
  mkdirSync(OUT, { recursive: true })
  const started = performance.now()
  const report: AttacksReport = { label, stamp: new Date().toISOString(), commit: gitCommit(), loadAvgStart: loadAverage(), loadAvgEnd: [0, 0, 0], honestRate: HONEST_RATE, phases: [], failures: {}, totalSeconds: 0 }
  log(`atrelay attack bench (${label}, ${report.commit}), load average ${report.loadAvgStart.join(' ')}`)
  await ensureCorpus({ params: DEFAULT_PARAMS, log })
  for (const phase of only) {
    log(`\n== ${phase} (load average ${loadAverage().join(' ')})`)
    const t0 = performance.now()
    try {
      report.phases.push(await runPhase(phase, log))
    } catch (err) {
      log(`   ${phase} FAILED: ${(err as Error).stack ?? String(err)}`)
      report.failures[phase] = String((err as Error).message ?? err)
    }
    log(`   ${phase} done in ${((performance.now() - t0) / 1000).toFixed(0)} s`)
  }
  report.loadAvgEnd = loadAverage()
  report.totalSeconds = Math.round((performance.now() - started) / 1000)
  const markdown = renderMarkdown(report)
  writeFileSync(join(OUT, `attacks-${label}.json`), JSON.stringify(report, null, 2) + '\n')
  writeFileSync(join(OUT, `attacks-${label}.md`), markdown)
  console.log(JSON.stringify(report))
  console.log('\n' + markdown)
  log(`wrote scratch/bench/attacks-${label}.json and .md (${report.totalSeconds} s)`)
}

await main()
process.exit(0)
