/**
 * `npm run bench`: the whole benchmark in one run, against the saved corpus
 * (bench/corpus), on loopback, each phase bounded and self-stopping:
 *
 *   (e) floor       decode + verify every corpus frame on one core, keys cached (child process)
 *   (e) reference   @atproto/sync Firehose with validation against one fake host (child process)
 *   (a) ingest      fleet offering as fast as the relay takes it; Postgres (with a CPU profile), then PGlite,
 *                   then Postgres again with the relay's default outbound PLC rate limit (lifted elsewhere)
 *   (a) workers     the Postgres ingest again with RELAY_VERIFY_WORKERS = 0, 1, … cores + 1 (not in --quick unless named)
 *   (b) latency     host send → consumer receive at 50 % and 80 % of (a)'s rate (or --max-rate N; else 2,000/s),
 *                   over the new-account burst and in steady state
 *   (c) fan-out     0 / 50 / 200 consumers (child process) at 1,000 events/s; relay CPU per consumer per event
 *   (d) memory      peak RSS while ingesting; 100k accounts seeded and read through the caches (child process)
 *
 * Prints the report and writes it to docs/benchmarks.md (a --quick run writes
 * scratch/bench/benchmarks-quick.md instead, so it never replaces full results).
 *
 *   npm run bench -- --render scratch/bench/results-full.json   (re-render a saved run, e.g. after editing bench/notes.md)
 *   npm run bench [-- --quick] [-- --only floor,reference,ingest,pglite,plclimit,workers,latency,fanout,jetstream,memory]
 *                 [-- --out FILE] [-- --accounts N] [-- --max-rate N (latency without the ingest phase)]
 */
import { execFileSync } from 'node:child_process'
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { availableParallelism } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { TEST_DATABASE_URL } from '../test/helpers/db.js'
import { ensureCorpus } from './corpus/corpus.js'
import { DEFAULT_PARAMS, QUICK_PARAMS, type CorpusParams } from './corpus/params.js'
import { describeMachine, loadAverage } from './suite/machine.js'
import { BenchSetupError, checkPostgres, ensureReferencePeer, POSTGRES_PHASES } from './suite/preflight.js'
import { runIngest, runWorkers, type IngestResult } from './suite/ingest.js'
import { runLatencyLevels } from './suite/latency.js'
import { runFanout, runFloor, runReference } from './suite/phases.js'
import { renderReport, type BenchResults } from './suite/report.js'
import { runJsonChild } from './suite/rpc.js'
import type { JetstreamBenchResult } from './jetstream.bench.js'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const PHASES = ['floor', 'reference', 'ingest', 'pglite', 'plclimit', 'workers', 'latency', 'fanout', 'jetstream', 'memory'] as const
type Phase = (typeof PHASES)[number]

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      quick: { type: 'boolean', default: false },
      only: { type: 'string' },
      out: { type: 'string' },
      accounts: { type: 'string' },
      render: { type: 'string' },
      'max-rate': { type: 'string' },
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
  // The quick run skips the extra Postgres ingests (default PLC limit, 0…N verify workers) to stay under 2 minutes.
  const defaults = quick ? PHASES.filter((p) => p !== 'plclimit' && p !== 'workers') : PHASES
  const only = new Set((values.only ?? defaults.join(',')).split(',').map((s) => s.trim()) as Phase[])
  for (const p of only) if (!PHASES.includes(p)) throw new Error(`unknown phase ${p}; phases: ${PHASES.join(', ')}`)
  const params: Partial<CorpusParams> = quick ? QUICK_PARAMS : DEFAULT_PARAMS
  const out = values.out ?? (quick ? join(ROOT, 'scratch/bench/benchmarks-quick.md') : join(ROOT, 'docs/benchmarks.md'))
  const log = (m: string) => console.error(m)
  const started = performance.now()
  const stamp = new Date().toISOString()

  log(`atrelay benchmark (${quick ? 'quick' : 'full'}), load average ${loadAverage().join(' ')}`)
  await checkPostgres(TEST_DATABASE_URL, [...only])
  if (only.has('reference')) ensureReferencePeer(ROOT, log)
  const machine = await describeMachine(TEST_DATABASE_URL, [...only].some((p) => POSTGRES_PHASES.includes(p)))
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
  results.workers = await phase('workers', () =>
    runWorkers({ params, deadlineMs: quick ? 30_000 : 240_000, max: availableParallelism() + 1, cores: availableParallelism(), log }),
  )
  results.latency = await phase('latency', () => {
    const measured = results.ingestPostgres?.steady.eventsPerSec
    const flag = values['max-rate'] !== undefined ? Number(values['max-rate']) : undefined
    if (flag !== undefined && !(flag > 0)) throw new Error(`--max-rate must be a positive number of events/s, got ${values['max-rate']}`)
    const max = measured !== undefined && measured > 0 ? { rate: measured, source: 'ingest' as const } : flag !== undefined ? { rate: flag, source: 'flag' as const } : undefined
    if (max?.source === 'ingest' && flag !== undefined) log(`   --max-rate ${flag} ignored: phase (a) measured ${Math.round(measured!)} events/s in this run`)
    if (!max) log('   no maximum ingest rate in this run (phase ingest not run or failed, no --max-rate): fixed 2,000 events/s')
    return runLatencyLevels({ params, frames: corpus.manifest.totals.frames, ...(max ? { max } : {}), log })
  })
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

try {
  await main()
} catch (err) {
  if (!(err instanceof BenchSetupError)) throw err
  console.error(`npm run bench: ${err.message}`)
  process.exit(1)
}
process.exit(0)
