/**
 * `ensureCorpus`: the benchmark corpus on disk, generated only when missing,
 * incomplete, or made with other parameters. Hosts are generated in worker
 * threads (in-process with `workers: 0`).
 */
import { createHash } from 'node:crypto'
import { mkdirSync, rmSync } from 'node:fs'
import { availableParallelism } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { Worker } from 'node:worker_threads'
import { NativeSecp256k1Keypair } from '../../test/helpers/fast-keys.js'
import { generateHost, type HostProgress } from './generate-host.js'
import { CORPUS_FORMAT_VERSION, DEFAULT_PARAMS, paramsKey, QUICK_PARAMS, validateParams, type CorpusParams } from './params.js'
import {
  readAccountsFile,
  readCompleteManifest,
  readFramesFile,
  writeManifest,
  type CorpusAccount,
  type CorpusEventCounts,
  type CorpusHost,
  type CorpusManifest,
} from './store.js'

export const CORPUS_ROOT = fileURLToPath(new URL('../.corpus/', import.meta.url))

export interface EnsureCorpusOptions {
  /** Parameters over DEFAULT_PARAMS. */
  params?: Partial<CorpusParams>
  /** Default: bench/.corpus/{default|quick|custom-<hash>}. */
  dir?: string
  /** Worker threads; default min(2, hosts, cores), or 0 below 500 accounts. 0 = generate in this thread. */
  workers?: number
  /** Regenerate even if a matching corpus exists. */
  force?: boolean
  log?: (message: string) => void
}

export interface Corpus {
  dir: string
  manifest: CorpusManifest
  /** False when an existing corpus was reused. */
  generated: boolean
}

export function corpusDirFor(params: CorpusParams): string {
  const key = paramsKey(params)
  if (key === paramsKey(DEFAULT_PARAMS)) return join(CORPUS_ROOT, 'default')
  if (key === paramsKey(QUICK_PARAMS)) return join(CORPUS_ROOT, 'quick')
  return join(CORPUS_ROOT, `custom-${createHash('sha256').update(key).digest('hex').slice(0, 10)}`)
}

export async function ensureCorpus(opts: EnsureCorpusOptions = {}): Promise<Corpus> {
  const params: CorpusParams = { ...DEFAULT_PARAMS, ...opts.params }
  validateParams(params)
  const dir = opts.dir ?? corpusDirFor(params)
  const key = paramsKey(params)
  const existing = readCompleteManifest(dir)
  if (!opts.force && existing && existing.paramsKey === key && existing.formatVersion === CORPUS_FORMAT_VERSION) {
    return { dir, manifest: existing, generated: false }
  }
  const log = opts.log ?? (() => {})
  log(existing ? `corpus in ${dir} has other parameters; regenerating` : `generating corpus in ${dir}`)
  rmSync(dir, { recursive: true, force: true })
  mkdirSync(dir, { recursive: true })

  const started = performance.now()
  const rotationKeyHex = Buffer.from(await NativeSecp256k1Keypair.generate().export()).toString('hex')
  // Worker start-up (~2 s each under tsx) is not worth it for small corpora.
  const workers = opts.workers ?? (params.accounts < 500 ? 0 : Math.min(2, params.hosts, availableParallelism()))
  const progress = new Map<number, HostProgress>()
  let lastLog = 0
  const onProgress = (p: HostProgress) => {
    progress.set(p.host, p)
    const now = performance.now()
    if (now - lastLog < 5000) return
    lastLog = now
    let commits = 0
    for (const q of progress.values()) commits += q.commits
    log(`  ${commits} commits in ${((now - started) / 1000).toFixed(0)} s (${Math.round(commits / ((now - started) / 1000))}/s)`)
  }
  const hosts = workers <= 0 ? await generateInline(params, dir, rotationKeyHex, onProgress) : await generateInWorkers(params, dir, rotationKeyHex, workers, onProgress)
  hosts.sort((a, b) => a.index - b.index)

  const events: CorpusEventCounts = { commit: 0, sync: 0, identity: 0, account: 0 }
  for (const h of hosts) for (const k of Object.keys(events) as (keyof CorpusEventCounts)[]) events[k] += h.events[k]
  const manifest: CorpusManifest = {
    formatVersion: CORPUS_FORMAT_VERSION,
    paramsKey: key,
    params,
    createdAt: new Date().toISOString(),
    generationMs: Math.round(performance.now() - started),
    rotationKeyHex,
    hosts,
    totals: {
      accounts: hosts.reduce((n, h) => n + h.accounts, 0),
      frames: hosts.reduce((n, h) => n + h.frames, 0),
      bytes: hosts.reduce((n, h) => n + h.bytes, 0),
      records: hosts.reduce((n, h) => n + h.records, 0),
      events,
    },
  }
  writeManifest(dir, manifest)
  log(
    `corpus done: ${manifest.totals.frames} frames (${events.commit} commits), ${(manifest.totals.bytes / 1e6).toFixed(1)} MB, ` +
      `${(manifest.generationMs / 1000).toFixed(1)} s (${Math.round(events.commit / (manifest.generationMs / 1000))} commits/s)`,
  )
  return { dir, manifest, generated: true }
}

export function loadHostFrames(corpus: Corpus, host: CorpusHost): Uint8Array[] {
  return readFramesFile(join(corpus.dir, host.framesFile))
}

export function loadHostAccounts(corpus: Corpus, host: CorpusHost): CorpusAccount[] {
  return readAccountsFile(join(corpus.dir, host.accountsFile))
}

async function generateInline(params: CorpusParams, dir: string, rotationKeyHex: string, onProgress: (p: HostProgress) => void): Promise<CorpusHost[]> {
  const hosts: CorpusHost[] = []
  for (let h = 0; h < params.hosts; h++) hosts.push(await generateHost(params, h, dir, rotationKeyHex, onProgress))
  return hosts
}

async function generateInWorkers(params: CorpusParams, dir: string, rotationKeyHex: string, count: number, onProgress: (p: HostProgress) => void): Promise<CorpusHost[]> {
  const assignments: number[][] = Array.from({ length: count }, () => [])
  for (let h = 0; h < params.hosts; h++) assignments[h % count]!.push(h)
  const fromSource = import.meta.url.endsWith('.ts')
  const workerUrl = new URL(fromSource ? './worker.ts' : './worker.js', import.meta.url)
  // Under tsx the TS loader is registered per thread: the worker registers its own first.
  const bootstrap = fromSource
    ? `import(${JSON.stringify(import.meta.resolve('tsx/esm/api'))}).then((m) => { m.register(); return import(${JSON.stringify(workerUrl.href)}) })`
    : null
  const results = await Promise.all(
    assignments.map(
      (hosts) =>
        new Promise<CorpusHost[]>((resolve, reject) => {
          const done: CorpusHost[] = []
          const worker = bootstrap
            ? new Worker(bootstrap, { eval: true, workerData: { params, hosts, dir, rotationKeyHex } })
            : new Worker(workerUrl, { workerData: { params, hosts, dir, rotationKeyHex } })
          worker.on('message', (msg: { type: string; host?: CorpusHost; progress?: HostProgress }) => {
            if (msg.type === 'progress' && msg.progress) onProgress(msg.progress)
            else if (msg.type === 'host' && msg.host) done.push(msg.host)
          })
          worker.once('error', reject)
          worker.once('exit', (code) => {
            if (code === 0 && done.length === hosts.length) resolve(done)
            else reject(new Error(`corpus worker exited with code ${code} after ${done.length}/${hosts.length} hosts`))
          })
        }),
    ),
  )
  return results.flat()
}
