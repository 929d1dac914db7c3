/**
 * `npm run bench`: the whole benchmark in one run, against the saved corpus
 * (bench/corpus), on loopback, each phase bounded and self-stopping:
 *
 *   (e) floor       decode + verify every corpus frame on one core, keys cached (child process)
 *   (e) reference   @atproto/sync Firehose with validation against one fake host (child process)
 *   (a) ingest      fleet offering as fast as the relay takes it; Postgres (with a CPU profile), then PGlite,
 *                   then Postgres again with the relay's default outbound PLC rate limit (lifted elsewhere)
 *   (b) latency     host send → consumer receive at 2,000 events/s offered
 *   (c) fan-out     0 / 50 / 200 consumers (child process) at 1,000 events/s; relay CPU per consumer per event
 *   (d) memory      peak RSS while ingesting; 100k accounts seeded and read through the caches (child process)
 *
 * Prints the report and writes it to docs/benchmarks.md (a --quick run writes
 * scratch/bench/benchmarks-quick.md instead, so it never replaces full results).
 *
 *   npm run bench -- --render scratch/bench/results-full.json   (re-render a saved run, e.g. after editing bench/notes.md)
 *   npm run bench [-- --quick] [-- --only floor,reference,ingest,pglite,latency,fanout,jetstream,memory] [-- --out FILE] [-- --accounts N]
 */
import { execFileSync } from 'node:child_process'
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { TEST_DATABASE_URL } from '../test/helpers/db.js'
import { ensureCorpus } from './corpus/corpus.js'
import { DEFAULT_PARAMS, QUICK_PARAMS, type CorpusParams } from './corpus/params.js'
import { describeMachine, loadAverage } from './suite/machine.js'
import { runIngest, type IngestResult } from './suite/ingest.js'
import { runLatency } from './suite/latency.js'
import { runFanout, runFloor, runReference } from './suite/phases.js'
import { renderReport, type BenchResults } from './suite/report.js'
import { runJsonChild } from './suite/rpc.js'
import type { JetstreamBenchResult } from './jetstream.bench.js'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const PHASES = ['floor', 'reference', 'ingest', 'pglite', 'plclimit', 'latency', 'fanout', 'jetstream', 'memory'] as const
type Phase = (typeof PHASES)[number]

/**
 * The reference phase runs `@atproto/sync` from the e2e peer's own install (test/peer), which a fresh
 * clone does not have until `npm test` ran: install it (cached outside the clone, so usually instant)
 * rather than fail mid-run with "Cannot find module".
 */
function ensureReferencePeer(log: (m: string) => void): void {
  if (existsSync(join(ROOT, 'test/peer/node_modules/@atproto/sync/package.json'))) return
  log('reference phase needs test/peer installed: running test/peer/install.sh')
  try {
    execFileSync('sh', [join(ROOT, 'test/peer/install.sh')], { stdio: ['ignore', 'inherit', 'inherit'] })
  } catch (err) {
    throw new Error(`test/peer/install.sh failed (${(err as Error).message}); run it by hand, or skip the phase with --only`)
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      quick: { type: 'boolean', default: false },
      only: { type: 'string' },
      out: { type: 'string' },
      accounts: { type: 'string' },
      render: { type: 'string' },
    },
  })
  if (values.render) {
    // Re-render a saved run (e.g. after editing bench/notes.md) without measuring again.
    const saved = JSON.parse(readFileSync(values.render, 'utf8')) as BenchResults
    const file = values.out ?? (saved.quick ? join(ROOT, 'scratch/bench/benchmarks-quick.md') : join(ROOT, 'docs/benchmarks.md'))
    writeFileSync(file, renderReport(saved))
    console.error(`wrote ${file} from ${values.render}`)
    return
  }
  const quick = values.quick === true
  // The quick run skips the second Postgres ingest (default PLC limit) to stay under 2 minutes.
  const defaults = quick ? PHASES.filter((p) => p !== 'plclimit') : PHASES
  const only = new Set((values.only ?? defaults.join(',')).split(',').map((s) => s.trim()) as Phase[])
  for (const p of only) if (!PHASES.includes(p)) throw new Error(`unknown phase ${p}; phases: ${PHASES.join(', ')}`)
  const params: Partial<CorpusParams> = quick ? QUICK_PARAMS : DEFAULT_PARAMS
  const out = values.out ?? (quick ? join(ROOT, 'scratch/bench/benchmarks-quick.md') : join(ROOT, 'docs/benchmarks.md'))
  const log = (m: string) => console.error(m)
  const started = performance.now()
  const stamp = new Date().toISOString()

  log(`atrelay benchmark (${quick ? 'quick' : 'full'}), load average ${loadAverage().join(' ')}`)
  if (only.has('reference')) ensureReferencePeer(log)
  const machine = await describeMachine(TEST_DATABASE_URL)
  const corpus = await ensureCorpus({ params, log })
  const results: BenchResults = { quick, stamp, machine, corpus: corpus.manifest, phases: [...only] }
  const profileFile = join(ROOT, 'scratch/bench/ingest-postgres.cpuprofile')

  const phase = async <T>(name: Phase, fn: () => Promise<T>): Promise<T | undefined> => {
    if (!only.has(name)) return undefined
    log(`\n== ${name} (load average ${loadAverage().join(' ')})`)
    const t0 = performance.now()
    try {
      const r = await fn()
      log(`   ${name} done in ${((performance.now() - t0) / 1000).toFixed(1)} s`)
      return r
    } catch (err) {
      log(`   ${name} FAILED: ${(err as Error).stack ?? String(err)}`)
      results.failures = { ...results.failures, [name]: String((err as Error).message ?? err) }
      return undefined
    }
  }

  results.floor = await phase('floor', () => runFloor(params, log))
  results.reference = await phase('reference', () => runReference(params, quick ? 30_000 : 120_000, log))
  results.ingestPostgres = await phase('ingest', () => runIngest({ kind: 'postgres', params, deadlineMs: quick ? 30_000 : 240_000, profileFile, log }))
  results.ingestPglite = await phase('pglite', () => runIngest({ kind: 'pglite', params, deadlineMs: quick ? 30_000 : 240_000, log }))
  results.ingestDefaultPlc = await phase('plclimit', () =>
    runIngest({ kind: 'postgres', params, deadlineMs: quick ? 30_000 : 240_000, plcLimit: 'default', log }),
  )
  results.latency = await phase('latency', () =>
    runLatency(quick ? { params, rate: 2000, warmMs: 300, windowMs: 900, log } : { params, rate: 2000, warmMs: 4000, windowMs: 12_000, log }),
  )
  // The same rate measured once the corpus's burst of new accounts is over (all 2,000 are created in
  // its first seconds): what consumers see from a relay in steady state.
  if (!quick) results.latencySteady = await phase('latency', () => runLatency({ params, rate: 2000, warmMs: 14_000, windowMs: 8_000, log }))
  // The same below the relay's capacity on a busy 2-core machine: latency without a standing queue.
  if (!quick) results.latencyLow = await phase('latency', () => runLatency({ params, rate: 500, warmMs: 4000, windowMs: 12_000, log }))
  results.fanout = await phase('fanout', () =>
    runFanout(
      quick
        ? { params, rate: 500, counts: [50, 200], warmMs: 300, windowMs: 800, log }
        : { params, rate: 1000, counts: [50, 200], warmMs: 4000, windowMs: 8000, log },
    ),
  )
  results.jetstream = await phase('jetstream', () =>
    runJsonChild<JetstreamBenchResult>({
      script: 'bench/jetstream.bench.ts',
      env: { BENCH_JSON: '1', BENCH_SECONDS: quick ? '3' : '8' },
      timeoutMs: quick ? 120_000 : 300_000,
      log,
    }),
  )
  results.memory = await phase('memory', () => {
    // Memory is measured on the relay as deployed (compiled; workers load no TypeScript loader).
    execFileSync(process.execPath, [join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', join(ROOT, 'tsconfig.build.json')], { stdio: 'inherit' })
    return runJsonChild<IngestResult & { endRssMB: number }>({
      script: 'bench/suite/memory-child.ts',
      nodeFlags: ['--expose-gc'],
      env: { BENCH_COMPILED_RELAY: '1' },
      args: [JSON.stringify({ params, accounts: values.accounts ? Number(values.accounts) : quick ? 10_000 : 100_000, deadlineMs: quick ? 30_000 : 240_000 })],
      timeoutMs: quick ? 90_000 : 600_000,
      log,
    }).then((r) => ({ ...r, loadAvg: r.loadAvg }))
  })
  results.totalSeconds = (performance.now() - started) / 1000
  mkdirSync(join(ROOT, 'scratch/bench'), { recursive: true })
  writeFileSync(join(ROOT, `scratch/bench/results-${quick ? 'quick' : 'full'}.json`), JSON.stringify(results, null, 2))
  const report = renderReport(results)
  mkdirSync(dirname(out), { recursive: true })
  writeFileSync(out, report)
  console.log(report)
  log(`\nwrote ${out} (${results.totalSeconds.toFixed(0)} s)`)
}

await main()
process.exit(0)
