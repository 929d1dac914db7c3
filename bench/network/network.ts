/**
 * One fake network and the relay under test: a fresh Postgres database
 * (created, migrated, seeded; dropped at the end), the PLC stand-in, the host
 * processes, the relay process and one consumer, plus the sampler that reads
 * all of them every few seconds.
 */
import { mkdirSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import pg from 'pg'
import { createPostgresDatabase } from '../../test/helpers/db.js'
import type { LatencySummary } from './latency.js'
import type { HostChildArgs } from './host-child.js'
import { activePerHost, hostSizes, identityCacheFor, accountCacheFor, type NetworkParams } from './params.js'
import { metricSum, migrateDatabase, RelayProcess } from './relay-process.js'
import { ChildRpc } from '../suite/rpc.js'
import { seedNetwork, type SeedResult } from './seed.js'
import { zipfWeights } from './zipf.js'

const ROOT = fileURLToPath(new URL('../../', import.meta.url))
/** Offered rate the host rings are sized for (frames kept per host = its share × this × (downtime + 2 min)). */
const RING_RATE = 3000

export interface Sample {
  /** seconds since the network started */
  t: number
  phase: string
  relayUp: boolean
  relayCpu: number
  rssMB: number
  seq: number
  connectedHosts: number
  partitionsDropped: number
  plcResolutions: number
  hostFrames: number
  hostBehind: number
  hostCpu: number
  hostRssMB: number
  consumerReceived: number
  consumerLastSeq: number
}

export interface HostStats {
  frames: number
  commit: number
  created: number
  identity: number
  account: number
  sync: number
  behind: number
  repicks: number
  open: number
  connections: number
  sent: number
  backlog: number
  cpuSeconds: number
  rssMB: number
}

export interface ConsumerStats {
  received: number
  commits: number
  lastSeq: number
  seqGaps: number
  seqMissing: number
  seqRepeats: number
  revRepeats: number
  sinceMismatches: number
  connects: number
  closes: number
  infoFrames: string[]
  errorFrames: string[]
  sinceSamples: string[]
  accounts: number
  open: boolean
}

export interface NetworkShape {
  hosts: number
  seededAccounts: number
  activeAccounts: number
  largestHost: { hostname: string; accounts: number }
  hostsOver500k: number
  hostsWith1to10: number
  identityCacheSize: number
  /** Absent in results saved before RELAY_ACCOUNT_CACHE_SIZE existed. */
  accountCacheSize?: number
  sizes: number[]
}

export class Network {
  readonly samples: Sample[] = []
  readonly seconds: LatencySummary[] = []
  readonly minutes: LatencySummary[] = []
  phase = 'start'
  private readonly t0 = performance.now()
  private timer: NodeJS.Timeout | null = null
  private sampling = false
  private childWeights: number[] = []

  private constructor(
    readonly params: NetworkParams,
    readonly shape: NetworkShape,
    readonly seed: SeedResult,
    readonly dbUrl: string,
    private readonly dropDb: () => Promise<void>,
    readonly plc: ChildRpc,
    readonly hostChildren: ChildRpc[],
    readonly relay: RelayProcess,
    public consumer: ChildRpc | null,
    private readonly log: (m: string) => void,
  ) {}

  static async start(params: NetworkParams, opts: { apiPort: number; metricsPort: number; log: (m: string) => void }): Promise<Network> {
    const log = opts.log
    const sizes = hostSizes(params.hosts, params.accounts)
    const active = activePerHost(sizes, params.active)
    const ports = sizes.map((_, i) => params.basePort + i)
    const activeTotal = active.reduce((a, b) => a + b, 0)
    const shape: NetworkShape = {
      hosts: params.hosts,
      seededAccounts: params.accounts,
      activeAccounts: activeTotal,
      largestHost: { hostname: `localhost:${ports[0]}`, accounts: sizes[0]! },
      hostsOver500k: sizes.filter((s) => s >= 500_000).length,
      hostsWith1to10: sizes.filter((s) => s <= 10).length,
      identityCacheSize: identityCacheFor(activeTotal),
      accountCacheSize: accountCacheFor(activeTotal),
      sizes,
    }
    log(`  network ${params.label}: ${params.hosts} hosts (largest ${sizes[0]}, ${shape.hostsOver500k} ≥ 500k, ${shape.hostsWith1to10} with 1–10), ${params.accounts} seeded, ${activeTotal} active`)
    const db = await createPostgresDatabase()
    try {
      migrateDatabase(db.url)
      const seed = await seedNetwork(db.url, ports, sizes, log)
      log(`  seeded in ${seed.seconds.total} s (${(seed.dbBytesAfter / 2 ** 20).toFixed(0)} MB)`)
      const plc = await ChildRpc.start({ script: 'bench/network/plc-child.ts', log })
      // Host processes, each a slice of hosts with its active accounts (global Zipf ranks).
      const weights = zipfWeights(activeTotal, params.zipf, 1)
      const children: Promise<ChildRpc>[] = []
      const childWeights: number[] = []
      let offset = 0
      for (let first = 0; first < params.hosts; first += params.hostsPerChild) {
        const idx = ports.slice(first, first + params.hostsPerChild).map((_, k) => first + k)
        const n = idx.reduce((s, i) => s + active[i]!, 0)
        let w = 0
        for (let k = offset; k < offset + n; k++) w += weights[k]!
        const hostWeights: number[] = []
        let o = offset
        for (const i of idx) {
          let hw = 0
          for (let k = o; k < o + active[i]!; k++) hw += weights[k]!
          hostWeights.push(hw)
          o += active[i]!
        }
        const total = weights.reduce((a, b) => a + b, 0)
        const args: HostChildArgs = {
          hosts: idx.map((i) => ({ port: ports[i]!, active: active[i]! })),
          activeOffset: offset,
          activeTotal,
          zipf: params.zipf,
          accountRateCap: params.accountRateCap,
          seed: 1,
          registerUrl: plc.ready.registerUrl as string,
          ringPerHost: hostWeights.map((hw) => Math.max(2000, Math.ceil((hw / total) * RING_RATE * (params.downS + 120)))),
        }
        childWeights.push(w)
        children.push(ChildRpc.start({ script: 'bench/network/host-child.ts', args: [JSON.stringify(args)], nodeFlags: ['--max-old-space-size=8192'], readyTimeoutMs: 600_000, log }))
        offset += n
      }
      const hostChildren = await Promise.all(children)
      log(`  ${hostChildren.length} host processes up`)
      const logDir = join(ROOT, 'scratch/bench-network')
      const dataDir = join(logDir, `data-${params.label}`)
      mkdirSync(dataDir, { recursive: true })
      const relay = new RelayProcess(
        {
          DATABASE_URL: db.url,
          RELAY_ALLOW_INSECURE_HOSTS: 'true',
          RELAY_PLC_URL: plc.ready.url as string,
          RELAY_ADMIN_PASSWORD: 'bench',
          // The trusted default: big enough for the largest fake host (a limit near 1e9 overflows int4 in
          // src/api/host-limit-metrics.ts's "near the limit" count, see the report).
          RELAY_DEFAULT_ACCOUNT_LIMIT: '10000000',
          // Unused with Postgres, but /metrics reports its filesystem (and warns on every scrape if missing).
          RELAY_DATA_DIR: dataDir,
          RELAY_NEW_HOSTS_PER_DAY: '100000',
          // The stand-in is a local mirror: the default 100/s toward plc.directory would measure the limit.
          RELAY_PLC_RATE_LIMIT: '100000',
          RELAY_IDENTITY_CACHE_SIZE: String(shape.identityCacheSize),
          RELAY_ACCOUNT_CACHE_SIZE: String(shape.accountCacheSize),
          RELAY_EVENT_PARTITION_SIZE: String(params.partitionSize),
          RELAY_REPLAY_WINDOW: params.replayWindow,
          LOG_LEVEL: 'warn',
        },
        opts.apiPort,
        opts.metricsPort,
        join(logDir, `relay-${params.label}.log`),
      )
      const net = new Network(params, shape, seed, db.url, db.drop, plc, hostChildren, relay, null, log)
      net.childWeights = childWeights
      return net
    } catch (err) {
      await db.drop()
      throw err
    }
  }

  get elapsed(): number {
    return (performance.now() - this.t0) / 1000
  }

  /** A unix time (s, as the consumer stamps its summaries) on this network's clock (s since start). */
  elapsedOfUnix(unixS: number): number {
    return unixS - (performance.timeOrigin + this.t0) / 1000
  }

  /** Offered events/s over all hosts, split by each process's Zipf weight. */
  async setRate(total: number): Promise<void> {
    const sum = this.childWeights.reduce((a, b) => a + b, 0)
    await Promise.all(this.hostChildren.map((c, i) => c.call('rate', { perSec: (total * this.childWeights[i]!) / sum })))
  }

  async setMax(on: boolean): Promise<void> {
    await Promise.all(this.hostChildren.map((c) => c.call('max', { on })))
  }

  async startConsumer(): Promise<void> {
    this.consumer = await ChildRpc.start({ script: 'bench/network/consumer-child.ts', args: [JSON.stringify({ url: this.relay.firehoseUrl })], nodeFlags: ['--max-old-space-size=4096'], log: this.log })
  }

  async hostStats(): Promise<HostStats> {
    const all = await Promise.all(this.hostChildren.map((c) => c.call<HostStats>('stats')))
    const out = { ...all[0]! }
    for (const s of all.slice(1)) for (const k of Object.keys(out) as (keyof HostStats)[]) out[k] += s[k]
    return out
  }

  async consumerStats(): Promise<ConsumerStats> {
    return this.consumer!.call<ConsumerStats>('stats')
  }

  startSampling(everyMs: number): void {
    this.timer = setInterval(() => void this.sample(), everyMs)
  }

  async sample(): Promise<Sample | undefined> {
    if (this.sampling) return undefined
    this.sampling = true
    try {
      const [m, hosts, consumer, plc] = await Promise.all([
        this.relay.metrics(),
        this.hostStats(),
        this.consumer ? this.consumerStats() : Promise.resolve(null),
        this.plc.call<{ resolutions: number }>('stats'),
      ])
      if (this.consumer) {
        const d = await this.consumer.call<{ seconds: LatencySummary[]; minutes: LatencySummary[] }>('drain')
        this.seconds.push(...d.seconds)
        this.minutes.push(...d.minutes)
      }
      const p = this.relay.sample()
      const prev = this.samples[this.samples.length - 1]
      const s: Sample = {
        t: this.elapsed,
        phase: this.phase,
        relayUp: p.up && m.size > 0,
        relayCpu: p.cpuSeconds,
        rssMB: p.rssBytes / 2 ** 20,
        // while the relay is down (or its metrics do not answer) carry the last value over
        seq: m.size > 0 ? metricSum(m, 'relay_sequencer_seq') : (prev?.seq ?? 0),
        connectedHosts: m.size > 0 ? metricSum(m, 'relay_upstream_connected_hosts') : 0,
        partitionsDropped: this.droppedBefore + (m.size > 0 ? (this.droppedLast = metricSum(m, 'relay_event_log_partitions_dropped_total')) : this.droppedLast),
        plcResolutions: plc.resolutions,
        hostFrames: hosts.frames,
        hostBehind: hosts.behind,
        hostCpu: hosts.cpuSeconds,
        hostRssMB: hosts.rssMB,
        consumerReceived: consumer?.received ?? 0,
        consumerLastSeq: consumer?.lastSeq ?? 0,
      }
      this.samples.push(s)
      return s
    } catch (err) {
      this.log(`  sample failed: ${(err as Error).message}`)
      return undefined
    } finally {
      this.sampling = false
    }
  }
  /** Partition drops of earlier relay incarnations, and the current one's counter (restarts at 0 with the process). */
  private droppedBefore = 0
  private droppedLast = 0

  /** Call when the relay is stopped: its counters start again from zero. */
  relayStopped(): void {
    this.droppedBefore += this.droppedLast
    this.droppedLast = 0
  }

  async dbFigures(): Promise<{ dbBytes: number; eventBytes: number; retainedEvents: number; minSeq: number; maxSeq: number; accounts: number }> {
    const c = new pg.Client({ connectionString: this.dbUrl })
    await c.connect()
    try {
      const r = await c.query<{ db: string; ev: string; mn: string | null; mx: string | null; accounts: string }>(
        `select pg_database_size(current_database()) as db,
                (select coalesce(sum(pg_total_relation_size(inhrelid)), 0) from pg_inherits where inhparent = 'event'::regclass) as ev,
                (select min(seq) from event) as mn, (select max(seq) from event) as mx,
                (select last_value from account_id_seq) as accounts`,
      )
      const row = r.rows[0]!
      const mn = Number(row.mn ?? 0)
      const mx = Number(row.mx ?? 0)
      return { dbBytes: Number(row.db), eventBytes: Number(row.ev), retainedEvents: mx > 0 ? mx - mn + 1 : 0, minSeq: mn, maxSeq: mx, accounts: Number(row.accounts) }
    } finally {
      await c.end()
    }
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer)
    await this.consumer?.stop().catch(() => undefined)
    await this.relay.stop('SIGTERM').catch(() => undefined)
    await Promise.all(this.hostChildren.map((c) => c.stop().catch(() => undefined)))
    await this.plc.stop().catch(() => undefined)
    await this.dropDb().catch((err) => this.log(`  drop database failed: ${(err as Error).message}`))
  }
}
