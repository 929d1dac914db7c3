/**
 * The relay as the benchmarks run it: in this process, loopback only (DNS
 * answers only `localhost`, TXT lookups never leave the process), limits that
 * do not throttle a fleet of localhost hosts, logs at warn on stderr.
 */
import { pino } from 'pino'
import type { TxtLookup } from '../../src/identity/index.js'
import type { AddressLookup } from '../../src/net/net-guard.js'
import type { Relay } from '../../src/relay.js'

/**
 * BENCH_COMPILED_RELAY=1 runs the relay as `npm start` does: the compiled
 * JavaScript in dist/ (build it first), so its verify workers start without a
 * TypeScript loader. The memory phase uses it; the others run the sources.
 */
const relayRoot = process.env.BENCH_COMPILED_RELAY === '1' ? '../../dist/src' : '../../src'
const { loadConfig } = (await import(`${relayRoot}/config.js`)) as typeof import('../../src/config.js')
const { startRelay } = (await import(`${relayRoot}/relay.js`)) as typeof import('../../src/relay.js')

const loopbackLookup: AddressLookup = async (hostname) => {
  if (hostname === 'localhost' || hostname === '127.0.0.1') return [{ address: '127.0.0.1', family: 4 }]
  throw Object.assign(new Error(`bench DNS: ${hostname} does not exist`), { code: 'ENOTFOUND' })
}
const noTxt: TxtLookup = async (name) => {
  throw Object.assign(new Error(`bench DNS: no TXT for ${name}`), { code: 'ENOTFOUND' })
}

export interface BenchRelayOptions {
  /** Postgres URL; absent: PGlite in `dataDir`. */
  databaseUrl?: string
  dataDir?: string
  plcUrl: string
  env?: Record<string, string>
  /**
   * 'lifted': RELAY_PLC_RATE_LIMIT=1000000 instead of the default 100 resolutions/s (a politeness
   * limit toward plc.directory), so the bench measures the relay, not the limit: the corpus creates
   * all its accounts inside the run, and every account's first event is an #identity that forces a
   * PLC resolution. 'default' keeps it.
   */
  plcLimit?: 'default' | 'lifted'
}

export async function startBenchRelay(opts: BenchRelayOptions): Promise<Relay> {
  const config = loadConfig({
    ...(opts.databaseUrl ? { DATABASE_URL: opts.databaseUrl } : { RELAY_DATA_DIR: opts.dataDir ?? 'memory://' }),
    RELAY_API_LISTEN: '127.0.0.1:0',
    RELAY_METRICS_LISTEN: '127.0.0.1:0',
    RELAY_ALLOW_INSECURE_HOSTS: 'true',
    RELAY_PLC_URL: opts.plcUrl,
    RELAY_ADMIN_PASSWORD: 'bench',
    // Every fake host is an untrusted localhost:<port>; its rate limits scale with the account limit.
    RELAY_DEFAULT_ACCOUNT_LIMIT: '1000000000',
    RELAY_NEW_HOSTS_PER_DAY: '10000',
    LOG_LEVEL: 'warn',
    ...(opts.plcLimit === 'lifted' ? { RELAY_PLC_RATE_LIMIT: '1000000' } : {}),
    // Lets a run compare inline verification with a worker pool: RELAY_VERIFY_WORKERS=1 npm run bench
    ...(process.env.RELAY_VERIFY_WORKERS ? { RELAY_VERIFY_WORKERS: process.env.RELAY_VERIFY_WORKERS } : {}),
    // And the batch commit on the main thread against the writer thread: RELAY_DB_WRITER=inline npm run bench
    ...(process.env.RELAY_DB_WRITER ? { RELAY_DB_WRITER: process.env.RELAY_DB_WRITER } : {}),
    // And the ingest pool's size: RELAY_DB_POOL_SIZE=40 npm run bench
    ...(process.env.RELAY_DB_POOL_SIZE ? { RELAY_DB_POOL_SIZE: process.env.RELAY_DB_POOL_SIZE } : {}),
    ...opts.env,
  })
  const logger = pino({ level: config.logLevel, base: { service: 'atrelay-bench' } }, pino.destination(2))
  const relay = await startRelay(config, logger, { addressLookup: loopbackLookup, txtLookup: noTxt })
  verifyWorkersByRelay.set(relay, config.verifyWorkers)
  return relay
}

const verifyWorkersByRelay = new WeakMap<Relay, number>()

/** The verify worker threads a bench relay was configured with (RELAY_VERIFY_WORKERS resolved; 0 = inline). */
export function benchRelayVerifyWorkers(relay: Relay): number | undefined {
  return verifyWorkersByRelay.get(relay)
}

export interface IngestCounts {
  received: number
  accepted: number
  dropped: number
  droppedByReason: Record<string, number>
}

export function ingestCounts(relay: Relay, hostnames: readonly string[]): IngestCounts {
  const out: IngestCounts = { received: 0, accepted: 0, dropped: 0, droppedByReason: {} }
  for (const h of hostnames) {
    const s = relay.stats.snapshot(h)
    out.received += s.received
    out.accepted += s.accepted
    for (const [reason, n] of Object.entries(s.dropped)) {
      out.dropped += n
      out.droppedByReason[reason] = (out.droppedByReason[reason] ?? 0) + n
    }
  }
  return out
}

export async function addHosts(relay: Relay, hostnames: readonly string[]): Promise<void> {
  // All at once, so every host starts streaming at about the same time. Throws (XrpcError) when a host is refused.
  await Promise.all(hostnames.map((h) => relay.crawler.addHost(h)))
}

export function relayWsUrl(relay: Relay): string {
  return `ws://127.0.0.1:${relay.apiAddress.port}/xrpc/com.atproto.sync.subscribeRepos`
}
