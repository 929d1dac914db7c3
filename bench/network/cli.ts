/**
 * `npm run bench:network`: the relay against a network-shaped workload (issue 15).
 * Not part of `npm run bench` or CI. See bench/network/README.md.
 *
 *   npm run bench:network                       # 3,000 hosts, 10 M accounts, 100k active, 30-min soak + 5 min at 90 %
 *   npm run bench:network -- --smoke            # 100 hosts, 200k accounts, 5k active, 1-min soak (a few minutes)
 *   npm run bench:network -- --hosts 1000 --accounts 2000000 --active 20000 --soak-min 5 --high-min 1
 *   npm run bench:network -- --render scratch/bench-network/results-smoke.json
 *
 * Writes docs/benchmarks-network.md (+ SVG charts in docs/benchmarks-network/), or for --smoke
 * scratch/bench-network/report-smoke.md, and the raw results to scratch/bench-network/results-<label>.json.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { TEST_DATABASE_URL } from '../../test/helpers/db.js'
import { describeMachine } from '../suite/machine.js'
import { Network } from './network.js'
import { parseNetworkArgs, type NetworkParams } from './params.js'
import { runSmall, runTimeline } from './phases.js'
import { buildRelay } from './relay-process.js'
import { writeCharts } from './report-charts.js'
import { renderNetworkReport, type NetworkResults } from './report.js'

const ROOT = fileURLToPath(new URL('../../', import.meta.url))
const SCRATCH = join(ROOT, 'scratch/bench-network')
const log = (m: string) => console.error(`[${new Date().toISOString().slice(11, 19)}] ${m}`)

async function render(r: NetworkResults): Promise<string> {
  const smoke = r.params.label === 'smoke'
  const file = smoke ? join(SCRATCH, 'report-smoke.md') : join(ROOT, 'docs/benchmarks-network.md')
  const rel = smoke ? 'charts-smoke' : 'benchmarks-network'
  const dir = join(dirname(file), rel)
  mkdirSync(dir, { recursive: true })
  const charts = await writeCharts(r, dir, rel)
  writeFileSync(file, renderNetworkReport(r, charts))
  return file
}

async function waitConnected(net: Network, deadlineS: number): Promise<number | null> {
  const t0 = net.elapsed
  while (net.elapsed - t0 < deadlineS) {
    const s = await net.sample()
    if (s && s.connectedHosts >= net.params.hosts) return net.elapsed - t0
    await new Promise((r) => setTimeout(r, 500))
  }
  return null
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2)
  const p = parseNetworkArgs(argv)
  if (p.render) {
    log(`wrote ${await render(JSON.parse(readFileSync(p.render, 'utf8')) as NetworkResults)}`)
    return
  }
  const started = performance.now()
  mkdirSync(SCRATCH, { recursive: true })
  const machine = await describeMachine(TEST_DATABASE_URL)
  buildRelay(log)
  const failures: Record<string, string> = {}

  log(`== network (${p.label})`)
  const net = await Network.start(p, { apiPort: 27470, metricsPort: 27471, log })
  let results: NetworkResults
  try {
    net.phase = 'relay-start'
    const relayStartS = (await net.relay.start()) / 1000
    log(`  relay API up in ${relayStartS.toFixed(1)} s; waiting for ${p.hosts} host connections`)
    net.startSampling(2000)
    const firstConnectS = await waitConnected(net, 600)
    log(`  all hosts connected after ${firstConnectS?.toFixed(1) ?? 'never'} s`)
    await net.startConsumer()
    const timeline = await runTimeline(net, log)
    await new Promise((r) => setTimeout(r, 3000))
    await net.sample()
    const drained = await net.consumer!.call<{ seconds: NetworkResults['seconds']; minutes: NetworkResults['minutes'] }>('drain', { all: true })
    net.seconds.push(...drained.seconds)
    net.minutes.push(...drained.minutes)
    const db = await net.dbFigures().catch((err: Error) => ((failures.db = err.message), undefined))
    results = {
      stamp: new Date().toISOString(),
      argv,
      params: p,
      machine,
      shape: { ...net.shape, sizes: net.shape.sizes.slice(0, 50) },
      seed: net.seed,
      relayStartS,
      firstConnectS,
      timeline,
      samples: net.samples,
      seconds: net.seconds.map((x) => ({ ...x, t: net.elapsedOfUnix(x.t) })),
      minutes: net.minutes.map((x) => ({ ...x, t: net.elapsedOfUnix(x.t) })),
      consumer: await net.consumerStats(),
      hosts: await net.hostStats(),
      ...(db ? { db } : {}),
      failures,
      totalSeconds: 0,
    }
  } finally {
    await net.stop()
  }
  writeFileSync(join(SCRATCH, `results-${p.label}.json`), JSON.stringify(results, null, 1))

  log('== small corpus (same harness, same offered rate)')
  const smallParams: NetworkParams = { ...p, hosts: p.small.hosts, accounts: p.small.accounts, active: p.small.active, basePort: 29000, hostsPerChild: p.small.hosts, label: `${p.label}-small` }
  try {
    const small = await Network.start(smallParams, { apiPort: 27480, metricsPort: 27481, log })
    try {
      await small.relay.start()
      small.startSampling(2000)
      await waitConnected(small, 120)
      await small.startConsumer()
      const r = await runSmall(small, results.timeline!.soakRate, log)
      results.small = { ...r, shape: { ...small.shape, sizes: [] } }
    } finally {
      await small.stop()
    }
  } catch (err) {
    failures.small = String((err as Error).stack ?? err)
    log(`  small corpus FAILED: ${failures.small}`)
  }
  results.totalSeconds = (performance.now() - started) / 1000
  writeFileSync(join(SCRATCH, `results-${p.label}.json`), JSON.stringify(results, null, 1))
  log(`wrote ${await render(results)} and scratch/bench-network/results-${p.label}.json (${(results.totalSeconds / 60).toFixed(1)} min)`)
}

await main()
process.exit(0)
