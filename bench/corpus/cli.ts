/**
 * Generate (or reuse) the benchmark corpus.
 *   npx tsx bench/corpus/cli.ts [--quick] [--force] [--workers N] [--dir D]
 *     [--accounts N] [--hosts H] [--commits-per-account N] [--deep-accounts N]
 *     [--deep-records N] [--p256-share F] [--seed N] [--base-port P]
 * Prints the manifest path and totals as one JSON line.
 */
import { parseArgs } from 'node:util'
import { ensureCorpus } from './corpus.js'
import { DEFAULT_PARAMS, QUICK_PARAMS, type CorpusParams } from './params.js'

const { values } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    force: { type: 'boolean', default: false },
    workers: { type: 'string' },
    dir: { type: 'string' },
    accounts: { type: 'string' },
    hosts: { type: 'string' },
    'commits-per-account': { type: 'string' },
    'deep-accounts': { type: 'string' },
    'deep-records': { type: 'string' },
    'p256-share': { type: 'string' },
    seed: { type: 'string' },
    'base-port': { type: 'string' },
  },
})

const params: CorpusParams = { ...(values.quick ? QUICK_PARAMS : DEFAULT_PARAMS) }
const numeric: [keyof typeof values, keyof CorpusParams][] = [
  ['accounts', 'accounts'],
  ['hosts', 'hosts'],
  ['commits-per-account', 'commitsPerAccount'],
  ['deep-accounts', 'deepAccounts'],
  ['deep-records', 'deepRecords'],
  ['p256-share', 'p256Share'],
  ['seed', 'seed'],
  ['base-port', 'basePort'],
]
for (const [flag, key] of numeric) {
  const v = values[flag]
  if (typeof v === 'string') params[key] = Number(v)
}

const corpus = await ensureCorpus({
  params,
  dir: values.dir,
  force: values.force,
  workers: values.workers === undefined ? undefined : Number(values.workers),
  log: (m) => console.error(m),
})
console.log(JSON.stringify({ dir: corpus.dir, generated: corpus.generated, generationMs: corpus.manifest.generationMs, totals: corpus.manifest.totals }))
