/**
 * A fleet of fake PDS hosts on loopback replaying a saved corpus, plus a
 * loopback PLC holding the corpus DIDs (re-posted from their signed ops).
 *
 * Host i listens on the corpus's fixed port (basePort + i), which its DIDs
 * name. If that port is taken, the host gets a free port and its DIDs are
 * re-pointed there with PLC update ops signed by the corpus rotation key.
 *
 * Frames are fed lazily: a host appends corpus frames only as its
 * subscribers catch up, at the offered rate or as fast as they read. So a
 * relay that connects without a cursor still sees the whole corpus, and one
 * that reconnects with a cursor gets the rest replayed.
 *
 * CLI: npx tsx bench/fake-host-fleet.ts [--quick] [--rate-per-host N | --total-rate N] [--measure]
 *   prints {"ready":true,"plcUrl":…,"hosts":[{hostname,url,frames}],…} then runs until SIGINT/SIGTERM
 *   or stdin closes; --measure instead drains every host into a raw ws client and prints frames/s.
 */
import { spawn } from 'node:child_process'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { parseArgs } from 'node:util'
import * as plcLib from '@did-plc/lib'
import { FakePds, type SeqFrame } from '../test/helpers/fake-pds.js'
import { NativeSecp256k1Keypair } from '../test/helpers/fast-keys.js'
import { LoopbackPlc, type PlcOpsEntry } from '../test/helpers/loopback-plc.js'
import { ensureCorpus, loadHostAccounts, loadHostFrames, type Corpus } from './corpus/corpus.js'
import type { CorpusHost } from './corpus/store.js'
import { QUICK_PARAMS } from './corpus/params.js'

export interface FleetOptions {
  corpus: Corpus
  /** Offered rate per host, frames/s; 0 or absent = as fast as subscribers read. */
  ratePerHost?: number
  /** Alternatively a total offered rate, split evenly over the hosts. */
  totalRate?: number
  /** Use this PLC (must not hold the corpus DIDs yet); default: start one. */
  plc?: LoopbackPlc
  /** 'import' (default): trusted bulk load of the saved ops; 'post': re-POST every op (the PLC verifies each, ~10–30 ms per DID). */
  plcLoad?: 'import' | 'post'
  /** A fixed port that is taken: re-point its DIDs to a free port (default) or fail. */
  onPortBusy?: 'repoint' | 'fail'
  /** What a subscriber without ?cursor= gets; default 'live' (the spec's behaviour). */
  noCursor?: 'live' | 'oldest'
  highWaterMark?: number
  log?: (message: string) => void
}

export interface FleetHost {
  pds: FakePds
  corpusHost: CorpusHost
  /** Frames in the corpus for this host. */
  frames: number
  /** True if the fixed port was taken and the host's DIDs were re-pointed. */
  repointed: boolean
}

export class FakeHostFleet {
  private constructor(
    readonly corpus: Corpus,
    readonly hosts: FleetHost[],
    readonly plc: LoopbackPlc,
    private readonly ownsPlc: boolean,
    private readonly sources: SeqFrame[][],
  ) {}

  static async start(opts: FleetOptions): Promise<FakeHostFleet> {
    const { corpus } = opts
    const log = opts.log ?? (() => {})
    const manifest = corpus.manifest
    const rate = opts.totalRate ? opts.totalRate / manifest.hosts.length : (opts.ratePerHost ?? 0)
    const rotationKey = new NativeSecp256k1Keypair(Buffer.from(manifest.rotationKeyHex, 'hex'))
    const hosts: FleetHost[] = []
    const sources: SeqFrame[][] = []
    const plcEntries: PlcOpsEntry[] = []
    let plc: LoopbackPlc | null = opts.plc ?? null
    try {
      for (const corpusHost of manifest.hosts) {
        const pdsOpts = { highWaterMark: opts.highWaterMark, noCursor: opts.noCursor ?? 'live' }
        let pds: FakePds
        let repointed = false
        try {
          pds = await FakePds.start({ ...pdsOpts, port: corpusHost.port })
        } catch (err) {
          if (opts.onPortBusy === 'fail' || (err as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw err
          pds = await FakePds.start(pdsOpts)
          repointed = true
          log(`port ${corpusHost.port} busy: host ${corpusHost.index} on ${pds.port}, DIDs re-pointed`)
        }
        const frames = loadHostFrames(corpus, corpusHost)
        sources.push(frames.map((bytes, i) => ({ seq: i + 1, bytes })))
        hosts.push({ pds, corpusHost, frames: frames.length, repointed })
        for (const account of loadHostAccounts(corpus, corpusHost)) {
          const state = { did: account.did, head: account.head, rev: account.rev, active: account.active }
          pds.setRepoState(account.status ? { ...state, status: account.status } : state)
          const ops = [...account.plcOps]
          if (repointed) ops.push(await plcLib.updatePdsOp(ops[ops.length - 1] as plcLib.Operation, rotationKey, pds.url))
          plcEntries.push({ did: account.did, ops })
        }
      }
      const ownsPlc = plc === null
      plc ??= await LoopbackPlc.start()
      const t0 = performance.now()
      if (opts.plcLoad === 'post') await plc.registerAll(plcEntries)
      else await plc.importOps(plcEntries)
      log(`PLC ${plc.url}: ${plcEntries.length} DIDs registered in ${Math.round(performance.now() - t0)} ms`)
      const fleet = new FakeHostFleet(corpus, hosts, plc, ownsPlc, sources)
      fleet.restart(rate)
      return fleet
    } catch (err) {
      await Promise.all(hosts.map((h) => h.pds.close()))
      if (plc && !opts.plc) await plc.close()
      throw err
    }
  }

  get plcUrl(): string {
    return this.plc.url
  }
  get hostnames(): string[] {
    return this.hosts.map((h) => h.pds.hostname)
  }
  get totalFrames(): number {
    return this.hosts.reduce((n, h) => n + h.frames, 0)
  }
  /** Corpus frames handed to subscribers so far (appended to the hosts' histories). */
  get framesReleased(): number {
    return this.hosts.reduce((n, h) => n + h.pds.storedFrames, 0)
  }

  /** Changes every host's offered rate (frames/s per host; 0 = unlimited). */
  setRatePerHost(ratePerSec: number): void {
    for (const h of this.hosts) h.pds.setRate(ratePerSec)
  }

  /** Forgets each host's history and feeds the corpus again from seq 1 (drops subscribers). */
  restart(ratePerHost = 0): void {
    this.hosts.forEach((h, i) => {
      h.pds.resetSequence()
      h.pds.play(this.sources[i] as SeqFrame[], { ratePerSec: ratePerHost })
    })
  }

  /** Resolves when every host has released its whole corpus. */
  async released(): Promise<void> {
    await Promise.all(this.hosts.map((h) => h.pds.playbackDone()))
  }

  async close(): Promise<void> {
    await Promise.all(this.hosts.map((h) => h.pds.close()))
    if (this.ownsPlc) await this.plc.close()
  }
}

export interface ReplayMeasurement {
  frames: number
  bytes: number
  seconds: number
  framesPerSec: number
  mbPerSec: number
}

/**
 * Drains every host (cursor=0) into raw `ws` clients running in a child
 * process (so the fleet gets this process to itself), and reports what the
 * clients received per second.
 */
export async function measureReplay(fleet: FakeHostFleet): Promise<ReplayMeasurement> {
  const targets = fleet.hosts.map((h) => ({ url: `${h.pds.wsUrl}/xrpc/com.atproto.sync.subscribeRepos?cursor=0`, frames: h.frames }))
  const script = `
    import WebSocket from 'ws'
    const targets = JSON.parse(process.argv[1])
    let frames = 0, bytes = 0
    const t0 = performance.now()
    await Promise.all(targets.map((t) => new Promise((resolve, reject) => {
      const ws = new WebSocket(t.url, { perMessageDeflate: false })
      let got = 0
      ws.on('message', (data) => { frames++; bytes += data.length; if (++got === t.frames) { ws.terminate(); resolve() } })
      ws.once('error', reject)
    })))
    const seconds = (performance.now() - t0) / 1000
    console.log(JSON.stringify({ frames, bytes, seconds }))
  `
  const child = spawn(process.execPath, ['--input-type=module', '-e', script, JSON.stringify(targets)], {
    cwd: fileURLToPath(new URL('..', import.meta.url)),
    stdio: ['ignore', 'pipe', 'inherit'],
  })
  let out = ''
  child.stdout.on('data', (d: Buffer) => (out += d.toString()))
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve))
  if (code !== 0) throw new Error(`replay consumer exited with ${code}`)
  const { frames, bytes, seconds } = JSON.parse(out) as { frames: number; bytes: number; seconds: number }
  return { frames, bytes, seconds, framesPerSec: Math.round(frames / seconds), mbPerSec: Math.round(bytes / seconds / 1e6) }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      quick: { type: 'boolean', default: false },
      'rate-per-host': { type: 'string' },
      'total-rate': { type: 'string' },
      measure: { type: 'boolean', default: false },
    },
  })
  const log = (m: string) => console.error(m)
  const corpus = await ensureCorpus({ params: values.quick ? QUICK_PARAMS : {}, log })
  const fleet = await FakeHostFleet.start({
    corpus,
    ratePerHost: values['rate-per-host'] ? Number(values['rate-per-host']) : undefined,
    totalRate: values['total-rate'] ? Number(values['total-rate']) : undefined,
    log,
  })
  if (values.measure) {
    const result = await measureReplay(fleet)
    console.log(JSON.stringify({ measure: 'raw ws replay, all hosts in parallel, consumer in a child process', hosts: fleet.hosts.length, ...result }))
    await fleet.close()
    return
  }
  console.log(
    JSON.stringify({
      ready: true,
      plcUrl: fleet.plcUrl,
      corpus: corpus.dir,
      totalFrames: fleet.totalFrames,
      hosts: fleet.hosts.map((h) => ({ hostname: h.pds.hostname, url: h.pds.url, frames: h.frames, repointed: h.repointed })),
    }),
  )
  await new Promise<void>((resolve) => {
    process.once('SIGINT', resolve)
    process.once('SIGTERM', resolve)
    process.stdin.once('end', resolve)
    process.stdin.resume()
  })
  await fleet.close()
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  await main()
}
