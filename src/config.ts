/**
 * Typed configuration from environment variables. Every setting is declared once
 * in SETTINGS (name, default, meaning, parser); `config/example.env` and the
 * README document the same list, and a test keeps them in step.
 * A bad value stops start-up with one line naming the variable.
 */
import { availableParallelism } from 'node:os'
import { MAX_FUTURE_REV_MS } from './atproto/limits.js'

export class ConfigError extends Error {
  override readonly name = 'ConfigError'
  constructor(
    readonly variable: string,
    problem: string,
  ) {
    super(`${variable}: ${problem}`)
  }
}

export interface ListenAddress {
  /** undefined: every interface */
  host: string | undefined
  port: number
}

export type FutureCursorPolicy = 'reset' | 'stop'
export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent'

export interface Config {
  databaseUrl: string | undefined
  databaseReadUrl: string | undefined
  dataDir: string
  dbPoolSize: number
  dbSocket: 'auto' | 'off'
  dbWriter: 'thread' | 'inline'
  dbQueryPoolSize: number
  dbQueryQueue: number
  dbQueryWaitMs: number
  clientIpHeader: string | undefined
  limitLoopback: boolean
  clientRateLimit: number
  clientRateWindowMs: number
  clientConcurrency: number
  firehoseConnectionsPerClient: number
  crawlRateLimit: number
  crawlConcurrency: number
  crawlFailureTtlMs: number
  crawlProbeIntervalMs: number
  apiListen: ListenAddress
  metricsListen: ListenAddress
  logLevel: LogLevel
  adminPassword: string | undefined
  plcUrl: string
  allowInsecureHosts: boolean
  trustedDomains: string[]
  defaultAccountLimit: number
  trustedAccountLimit: number
  newHostsPerDay: number
  disableRequestCrawl: boolean
  lenient: boolean
  futureCursor: FutureCursorPolicy
  verifyWorkers: number
  initialSeq: number
  replayWindowMs: number
  consumerMaxLag: number
  consumerMinRate: number
  consumerSlowWindowMs: number
  firehoseFlushIntervalMs: number
  maxFutureRevMs: number
  identityCacheSize: number
  accountCacheSize: number
  identityTtlMs: number
  identityErrorTtlMs: number
  hostConcurrency: number
  adminUrl: string
  eventPartitionSize: number
  plcRateLimit: number
  collectionsBackfill: boolean
  collectionsBackfillRate: number
  jetstream: boolean
  jetstreamMaxLag: number
  jetstreamRingSize: number
  splitterUpstream: string | undefined
  splitterFallback: string | undefined
  splitterFailoverMs: number
  splitterProxyTimeoutMs: number
  splitterListCacheMs: number
}

type Env = Record<string, string | undefined>

interface Setting<K extends keyof Config> {
  env: string
  key: K
  default: string | undefined
  doc: string
  parse: (raw: string, env: string) => Config[K]
}

// ---- parsers -------------------------------------------------------------

function int(min: number, max: number) {
  return (raw: string, env: string): number => {
    const digits = raw.replace(/_/g, '') // 10_000 reads as 10000
    if (!/^-?\d+$/.test(digits)) throw new ConfigError(env, `expected an integer, got "${raw}"`)
    const n = Number(digits)
    if (!Number.isSafeInteger(n) || n < min || n > max)
      throw new ConfigError(env, `expected an integer from ${min} to ${max}, got "${raw}"`)
    return n
  }
}

/**
 * `auto` leaves one core to the main thread (network, database, sequencing).
 * Measured on 2 cores with Postgres alongside: 1 worker took ingest from
 * ~3,100 to ~4,100 events/s for 9 % more CPU per event (docs/benchmarks.md).
 */
function verifyWorkers(raw: string, env: string): number {
  if (raw.trim().toLowerCase() === 'auto') return Math.min(4, Math.max(0, availableParallelism() - 1))
  return int(0, 64)(raw, env)
}

function bool(raw: string, env: string): boolean {
  const v = raw.trim().toLowerCase()
  if (['true', '1', 'yes', 'on'].includes(v)) return true
  if (['false', '0', 'no', 'off', ''].includes(v)) return false
  throw new ConfigError(env, `expected true or false, got "${raw}"`)
}

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 }

/** "72h", "5m", "30s", "250ms", "1d" → milliseconds. */
export function parseDuration(raw: string, env: string): number {
  const m = /^(\d+)(ms|s|m|h|d)$/.exec(raw.trim())
  if (!m) throw new ConfigError(env, `expected a duration like 72h, 5m, 30s or 250ms, got "${raw}"`)
  return Number(m[1]) * DURATION_UNITS[m[2]!]!
}

/** A duration (parseDuration) from `minMs` to `maxMs`. */
function duration(minMs: number, maxMs: number) {
  return (raw: string, env: string): number => {
    const ms = parseDuration(raw, env)
    if (ms < minMs || ms > maxMs) throw new ConfigError(env, `expected a duration from ${minMs} ms to ${maxMs} ms, got "${raw}"`)
    return ms
  }
}

/** ":2470", "127.0.0.1:2470", "[::1]:2470" → host and port. */
export function parseListen(raw: string, env: string): ListenAddress {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([A-Za-z0-9.-]*)):(\d{1,5})$/.exec(raw.trim())
  const port = m ? Number(m[3]) : NaN
  if (!m || port > 65535) throw new ConfigError(env, `expected [host]:port such as :2470 or 127.0.0.1:2470, got "${raw}"`)
  const host = m[1] ?? (m[2] || undefined)
  return { host, port }
}

function url(protocols: string[]) {
  return (raw: string, env: string): string => {
    let u: URL
    try {
      u = new URL(raw)
    } catch {
      throw new ConfigError(env, `expected a URL, got "${raw}"`)
    }
    if (!protocols.includes(u.protocol)) throw new ConfigError(env, `expected a ${protocols.join(' or ')} URL, got "${raw}"`)
    return raw.replace(/\/+$/, '')
  }
}

function oneOf<T extends string>(values: readonly T[]) {
  return (raw: string, env: string): T => {
    if (!(values as readonly string[]).includes(raw)) throw new ConfigError(env, `expected one of ${values.join(', ')}, got "${raw}"`)
    return raw as T
  }
}

function domainList(raw: string, env: string): string[] {
  const items = raw
    .split(',')
    .map((s) => s.trim().toLowerCase())
    .filter(Boolean)
  for (const item of items)
    if (!/^(\*\.)?[a-z0-9-]+(\.[a-z0-9-]+)*$/.test(item))
      throw new ConfigError(env, `expected comma-separated domains or *.suffix patterns, got "${item}"`)
  return items
}

function headerName(raw: string, env: string): string | undefined {
  const name = raw.trim().toLowerCase()
  if (name === '') return undefined
  if (!/^[a-z0-9-]+$/.test(name)) throw new ConfigError(env, `expected an HTTP header name such as x-forwarded-for, got "${raw}"`)
  return name
}

const text = (raw: string): string => raw
const optionalText = (raw: string): string | undefined => raw || undefined

// ---- the settings ---------------------------------------------------------

const s = <K extends keyof Config>(setting: Setting<K>): Setting<K> => setting

export const SETTINGS = [
  s({ env: 'DATABASE_URL', key: 'databaseUrl', default: undefined, doc: 'PostgreSQL URL (postgres://…). Unset: embedded PGlite in RELAY_DATA_DIR.', parse: (raw, env) => (raw ? url(['postgres:', 'postgresql:'])(raw, env) : undefined) }),
  s({ env: 'RELAY_DATA_DIR', key: 'dataDir', default: './data', doc: 'Directory for the embedded PGlite database (created if missing).', parse: text }),
  s({ env: 'DATABASE_READ_URL', key: 'databaseReadUrl', default: undefined, doc: 'PostgreSQL URL for public API queries, e.g. a read replica. Unset: DATABASE_URL (still a separate pool).', parse: (raw, env) => (raw ? url(['postgres:', 'postgresql:'])(raw, env) : undefined) }),
  s({ env: 'RELAY_DB_POOL_SIZE', key: 'dbPoolSize', default: '20', doc: 'PostgreSQL pool for ingest, the sequencer, requestCrawl and admin (never used by public queries).', parse: int(1, 1000) }),
  s({ env: 'RELAY_DB_SOCKET', key: 'dbSocket', default: 'auto', doc: 'auto: a DATABASE_URL (or DATABASE_READ_URL) on a loopback address uses the same server\'s Unix socket (in a directory the server reports) when it answers as the same server and database (cheaper per event than loopback TCP); off: always the URL as given.', parse: oneOf(['auto', 'off'] as const) }),
  s({ env: 'RELAY_DB_WRITER', key: 'dbWriter', default: 'thread', doc: 'thread: the batch commit (and the identity rows\' and splitter log\'s group writes) run on a database writer thread with 2 connections of its own, off the main thread; inline: on the main thread through the ingest pool. PGlite always runs them inline.', parse: oneOf(['thread', 'inline'] as const) }),
  s({ env: 'RELAY_DB_QUERY_POOL_SIZE', key: 'dbQueryPoolSize', default: '10', doc: 'PostgreSQL pool for public API queries, and how many run at once (on PGlite: how many may queue on its one connection).', parse: int(1, 1000) }),
  s({ env: 'RELAY_DB_QUERY_QUEUE', key: 'dbQueryQueue', default: '200', doc: 'Public queries (and requestCrawls) that may wait for a free slot; beyond it they get 503.', parse: int(0, 1_000_000) }),
  s({ env: 'RELAY_DB_QUERY_WAIT', key: 'dbQueryWaitMs', default: '2s', doc: 'How long a public query (or requestCrawl) waits for a free slot before 503.', parse: parseDuration }),
  s({ env: 'RELAY_CLIENT_IP_HEADER', key: 'clientIpHeader', default: undefined, doc: 'Behind a reverse proxy: the header it appends the client address to (e.g. x-forwarded-for); the right-most address is used. Unset: the socket address.', parse: headerName }),
  s({ env: 'RELAY_LIMIT_LOOPBACK', key: 'limitLoopback', default: 'false', doc: 'Apply per-client limits to loopback clients too (by default 127.0.0.1/::1 are not limited).', parse: bool }),
  s({ env: 'RELAY_CLIENT_RATE_LIMIT', key: 'clientRateLimit', default: '3000', doc: 'XRPC requests per client per RELAY_CLIENT_RATE_WINDOW (token bucket: bursts up to this many); more get 429.', parse: int(1, 100_000_000) }),
  s({ env: 'RELAY_CLIENT_RATE_WINDOW', key: 'clientRateWindowMs', default: '1m', doc: 'Window of RELAY_CLIENT_RATE_LIMIT and RELAY_CRAWL_RATE_LIMIT.', parse: parseDuration }),
  s({ env: 'RELAY_CLIENT_CONCURRENCY', key: 'clientConcurrency', default: '20', doc: 'XRPC requests one client may have in progress at once; more get 429.', parse: int(1, 1_000_000) }),
  s({ env: 'RELAY_FIREHOSE_CONNECTIONS_PER_CLIENT', key: 'firehoseConnectionsPerClient', default: '50', doc: 'Open subscribeRepos connections per client; more get 429 on upgrade.', parse: int(1, 1_000_000) }),
  s({ env: 'RELAY_CRAWL_RATE_LIMIT', key: 'crawlRateLimit', default: '20', doc: 'requestCrawl calls per client per RELAY_CLIENT_RATE_WINDOW; more get 429.', parse: int(1, 1_000_000) }),
  s({ env: 'RELAY_CRAWL_CONCURRENCY', key: 'crawlConcurrency', default: '8', doc: 'Public requestCrawls checked at once (database reads and describeServer probes); more wait in the query queue, then 503.', parse: int(1, 10_000) }),
  s({ env: 'RELAY_CRAWL_FAILURE_TTL', key: 'crawlFailureTtlMs', default: '5m', doc: 'How long a hostname that failed validation or describeServer is answered from memory without a new lookup.', parse: parseDuration }),
  s({ env: 'RELAY_CRAWL_PROBE_INTERVAL', key: 'crawlProbeIntervalMs', default: '5m', doc: 'At most one describeServer probe of a known host per this interval; within it requestCrawl just wakes the host.', parse: parseDuration }),
  s({ env: 'RELAY_API_LISTEN', key: 'apiListen', default: ':2470', doc: 'Address for the API and firehose ([host]:port).', parse: parseListen }),
  s({ env: 'RELAY_METRICS_LISTEN', key: 'metricsListen', default: ':2471', doc: 'Address for Prometheus /metrics ([host]:port).', parse: parseListen }),
  s({ env: 'LOG_LEVEL', key: 'logLevel', default: 'info', doc: 'fatal, error, warn, info, debug, trace or silent.', parse: oneOf(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const) }),
  s({ env: 'RELAY_ADMIN_PASSWORD', key: 'adminPassword', default: undefined, doc: 'Admin API password (user "admin"). Unset: one is generated on the first start, logged once and kept in RELAY_DATA_DIR/admin-password (mode 0600).', parse: optionalText }),
  s({ env: 'RELAY_PLC_URL', key: 'plcUrl', default: 'https://plc.directory', doc: 'PLC directory used to resolve did:plc.', parse: url(['https:', 'http:']) }),
  s({ env: 'RELAY_PLC_RATE_LIMIT', key: 'plcRateLimit', default: '100', doc: 'DID resolutions per second sent to the PLC directory (bursts of twice that); raise it for a mirror you run.', parse: int(1, 1_000_000) }),
  s({ env: 'RELAY_ALLOW_INSECURE_HOSTS', key: 'allowInsecureHosts', default: 'false', doc: 'Development only: allow localhost:<port> hosts over plain ws/http and loopback addresses.', parse: bool }),
  s({ env: 'RELAY_TRUSTED_DOMAINS', key: 'trustedDomains', default: '*.host.bsky.network', doc: 'Comma-separated hostnames or *.suffix patterns given the trusted account limit.', parse: domainList }),
  s({ env: 'RELAY_DEFAULT_ACCOUNT_LIMIT', key: 'defaultAccountLimit', default: '100', doc: 'Accounts per untrusted host; more are throttled until the limit is raised.', parse: int(0, 1_000_000_000) }),
  s({ env: 'RELAY_TRUSTED_ACCOUNT_LIMIT', key: 'trustedAccountLimit', default: '10000000', doc: 'Accounts per trusted host.', parse: int(0, 1_000_000_000) }),
  s({ env: 'RELAY_NEW_HOSTS_PER_DAY', key: 'newHostsPerDay', default: '50', doc: 'New hosts admitted per 24 h through public requestCrawl.', parse: int(0, 1_000_000) }),
  s({ env: 'RELAY_DISABLE_REQUEST_CRAWL', key: 'disableRequestCrawl', default: 'false', doc: 'Refuse public requestCrawl (admins can still add hosts).', parse: bool }),
  s({ env: 'RELAY_LENIENT', key: 'lenient', default: 'false', doc: 'Log and count Sync 1.1 strict-check failures (MST inversion, missing prevData) instead of dropping.', parse: bool }),
  s({ env: 'RELAY_FUTURE_CURSOR', key: 'futureCursor', default: 'reset', doc: 'When a host answers FutureCursor (it reset its sequence): reset (reconnect live) or stop.', parse: oneOf(['reset', 'stop'] as const) }),
  s({
    env: 'RELAY_VERIFY_WORKERS',
    key: 'verifyWorkers',
    default: 'auto',
    doc: 'Verification worker threads; 0 verifies inline on the main thread; auto: one fewer than the CPU cores, at most 4.',
    parse: verifyWorkers,
  }),
  s({ env: 'RELAY_INITIAL_SEQ', key: 'initialSeq', default: '1', doc: 'Floor for the relay seq (start above a relay being replaced).', parse: int(1, Number.MAX_SAFE_INTEGER) }),
  s({ env: 'RELAY_REPLAY_WINDOW', key: 'replayWindowMs', default: '72h', doc: 'How long events stay available for cursor replay.', parse: parseDuration }),
  s({ env: 'RELAY_EVENT_PARTITION_SIZE', key: 'eventPartitionSize', default: '5000000', doc: 'Seqs per event-log partition; retention drops whole partitions, so small relays want smaller ones.', parse: int(1000, 1_000_000_000) }),
  s({ env: 'RELAY_CONSUMER_MAX_LAG', key: 'consumerMaxLag', default: '100000', doc: 'Events a consumer that was live may fall behind before its read rate is judged (RELAY_CONSUMER_MIN_RATE); within it, it is never cut off.', parse: int(1, 100_000_000) }),
  s({ env: 'RELAY_CONSUMER_MIN_RATE', key: 'consumerMinRate', default: '100', doc: 'Events/s a firehose consumer or Jetstream subscriber beyond its max lag must keep reading; one slower for RELAY_CONSUMER_SLOW_WINDOW gets ConsumerTooSlow, one that keeps reading keeps going (from the ring, then the event log).', parse: int(1, 100_000_000) }),
  s({ env: 'RELAY_CONSUMER_SLOW_WINDOW', key: 'consumerSlowWindowMs', default: '1m', doc: 'How long a reader beyond its max lag may read below RELAY_CONSUMER_MIN_RATE before it is closed (1s to 1h).', parse: duration(1_000, 3_600_000) }),
  s({ env: 'RELAY_FIREHOSE_FLUSH_INTERVAL', key: 'firehoseFlushIntervalMs', default: '10ms', doc: 'At most one live firehose write per consumer per this interval: events committed meanwhile wait (at most this long) and go out as one write; 0ms writes each committed batch at once (0ms to 1s).', parse: duration(0, 1_000) }),
  s({ env: 'RELAY_MAX_FUTURE_REV', key: 'maxFutureRevMs', default: `${MAX_FUTURE_REV_MS / 60_000}m`, doc: 'How far in the future a commit rev may be.', parse: parseDuration }),
  s({ env: 'RELAY_IDENTITY_CACHE_SIZE', key: 'identityCacheSize', default: '250000', doc: 'DID documents kept in memory (LRU; the identity table keeps the rest).', parse: int(1, 100_000_000) }),
  s({ env: 'RELAY_ACCOUNT_CACHE_SIZE', key: 'accountCacheSize', default: '100000', doc: 'Accounts (status and head) kept in memory (LRU; a miss is one database read).', parse: int(1, 100_000_000) }),
  s({ env: 'RELAY_IDENTITY_TTL', key: 'identityTtlMs', default: '24h', doc: 'How long a resolved DID document is trusted.', parse: parseDuration }),
  s({ env: 'RELAY_IDENTITY_ERROR_TTL', key: 'identityErrorTtlMs', default: '2m', doc: 'How long a failed resolution is remembered.', parse: parseDuration }),
  s({ env: 'RELAY_HOST_CONCURRENCY', key: 'hostConcurrency', default: '40', doc: 'Events of one host processed at once (different DIDs).', parse: int(1, 10_000) }),
  s({ env: 'RELAY_COLLECTIONS_BACKFILL', key: 'collectionsBackfill', default: 'true', doc: 'Fill the listReposByCollection index from each account\'s PDS (describeRepo) for what ingest has not seen: accounts known before the index, and repos after a #sync.', parse: bool }),
  s({ env: 'RELAY_COLLECTIONS_BACKFILL_RATE', key: 'collectionsBackfillRate', default: '5', doc: 'describeRepo requests per second per host for that backfill (bursts of twice that).', parse: int(1, 10_000) }),
  s({ env: 'RELAY_JETSTREAM', key: 'jetstream', default: 'true', doc: 'Serve Jetstream on the API port: v1 at /subscribe, v2 subscribeEvents and getZstdDictionary.', parse: bool }),
  s({ env: 'RELAY_JETSTREAM_MAX_LAG', key: 'jetstreamMaxLag', default: '500000', doc: 'Events a Jetstream subscriber that was live may fall behind before its read rate is judged like a consumer\'s (RELAY_CONSUMER_MIN_RATE, RELAY_CONSUMER_SLOW_WINDOW); a backfill from a cursor reads the log at its own pace.', parse: int(1, 100_000_000) }),
  s({ env: 'RELAY_JETSTREAM_RING_SIZE', key: 'jetstreamRingSize', default: '20000', doc: 'Recent events Jetstream keeps in memory (at most 64 MiB); subscribers further behind read the event log.', parse: int(1, 10_000_000) }),
  // `atrelay splitter` only (src/splitter/): a fan-out copy of another relay's firehose.
  s({ env: 'RELAY_SPLITTER_UPSTREAM', key: 'splitterUpstream', default: undefined, doc: 'Splitter mode: the relay to fan out (https://, wss://, http:// or ws://; --upstream on the command line).', parse: (raw, env) => (raw ? url(['https:', 'wss:', 'http:', 'ws:'])(raw, env) : undefined) }),
  s({ env: 'RELAY_SPLITTER_FALLBACK', key: 'splitterFallback', default: undefined, doc: 'Splitter mode: a second relay used while the upstream is unreachable (its seqs are another space: see docs/architecture.md §8; --fallback).', parse: (raw, env) => (raw ? url(['https:', 'wss:', 'http:', 'ws:'])(raw, env) : undefined) }),
  s({ env: 'RELAY_SPLITTER_FAILOVER_AFTER', key: 'splitterFailoverMs', default: '2m', doc: 'Splitter mode: how long the current upstream may stay unreachable before the splitter switches to the other one.', parse: parseDuration }),
  s({ env: 'RELAY_SPLITTER_PROXY_TIMEOUT', key: 'splitterProxyTimeoutMs', default: '10s', doc: 'Splitter mode: how long a forwarded sync query or requestCrawl may take upstream before 504.', parse: parseDuration }),
  s({ env: 'RELAY_SPLITTER_LIST_CACHE', key: 'splitterListCacheMs', default: '10s', doc: 'Splitter mode: how long listRepos and listHosts answers from the upstream are reused.', parse: parseDuration }),
  s({ env: 'RELAY_ADMIN_URL', key: 'adminUrl', default: 'http://127.0.0.1:2470', doc: 'For the admin CLI commands: the running relay to talk to.', parse: url(['http:', 'https:']) }),
] as const

/**
 * A setting's default, parsed: what code falls back to when it is built without
 * that option (tests, embedding), so the one default stays here in SETTINGS.
 */
export function configDefault<K extends keyof Config>(key: K): Config[K] {
  const setting = SETTINGS.find((candidate) => candidate.key === key) as Setting<K> | undefined
  if (setting?.default === undefined) throw new RangeError(`config setting ${key} has no default`)
  return setting.parse(setting.default, setting.env)
}

/** Every environment variable the relay reads. */
export const CONFIG_VARIABLES: string[] = SETTINGS.map((setting) => setting.env)

export function loadConfig(env: Env = process.env): Config {
  const out: Partial<Record<keyof Config, unknown>> = {}
  for (const setting of SETTINGS) {
    const raw = env[setting.env]
    const value = raw !== undefined ? raw : setting.default
    out[setting.key] = value === undefined ? undefined : (setting.parse as (r: string, e: string) => unknown)(value, setting.env)
  }
  return out as Config
}
