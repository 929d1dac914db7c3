/**
 * The one whole-relay test harness: `startTestRelay` starts the relay in-process with loopback-only
 * DNS, its own data directory and test-friendly settings; plus a consumer of its firehose, a tiny
 * DID-document server standing in for PLC (for fixture DIDs a real PLC cannot register), HTTP
 * helpers and bounded waits.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Logger } from 'pino'
import WebSocket from 'ws'
import { decodeFrame } from '../../src/atproto/frame.js'
import { loadConfig, type LogLevel } from '../../src/config.js'
import type { TxtLookup } from '../../src/identity/index.js'
import type { AddressLookup } from '../../src/net/net-guard.js'
import { createLogger } from '../../src/logger.js'
import { startRelay, type Relay, type RelayOverrides } from '../../src/relay.js'
import { waitUntil } from './wait.js'

export { waitUntil }

/** The admin password of every test relay unless `env.RELAY_ADMIN_PASSWORD` says otherwise. */
export const TEST_ADMIN_PASSWORD = 'correct horse battery staple'

/** Only `localhost` resolves (to 127.0.0.1); every other name is NXDOMAIN, so nothing leaves loopback. */
export const loopbackLookup: AddressLookup = async (hostname) => {
  if (hostname === 'localhost' || hostname === '127.0.0.1') return [{ address: '127.0.0.1', family: 4 }]
  throw Object.assign(new Error(`test DNS: ${hostname} does not exist`), { code: 'ENOTFOUND' })
}

/** Every name resolves to 127.0.0.1: for made-up host names (pds.spam.test …) served on loopback. */
export const everyNameLoopback: AddressLookup = async () => [{ address: '127.0.0.1', family: 4 }]

/** handle → DID, as a table or a function (undefined: no such handle). */
export type HandleSource = Map<string, string> | ((handle: string) => Promise<string | undefined>)

/** Handle → DID records answered as `_atproto.<handle>` TXT; anything else is NXDOMAIN. */
export function txtLookupFrom(handles: HandleSource): TxtLookup {
  return async (name) => {
    const handle = name.replace(/^_atproto\./, '').toLowerCase()
    const did = typeof handles === 'function' ? await handles(handle) : handles.get(handle)
    if (did === undefined) throw Object.assign(new Error(`test DNS: no TXT for ${name}`), { code: 'ENOTFOUND' })
    return [[`did=${did}`]]
  }
}

export interface TestRelayOptions {
  /** Postgres URL; omitted: embedded PGlite in the relay's own data directory. */
  databaseUrl?: string
  plcUrl: string
  /** handle → DID for handle verification (answered as DNS TXT); default: no handle resolves. */
  handles?: HandleSource
  lenient?: boolean
  /** Environment overrides, applied last (e.g. RELAY_ADMIN_PASSWORD: '' for a generated password). */
  env?: Record<string, string>
  /** Replaces loopbackLookup (e.g. everyNameLoopback, or to count lookups); must stay loopback-only. */
  addressLookup?: AddressLookup
  /** Default: silent, or the level in RELAY_TEST_LOG. */
  logger?: Logger
  /** Relay hooks beyond the harness's (backoff, batching, activity interval). */
  overrides?: RelayOverrides
}

/**
 * Starts a relay; `relay.stop()` also removes the data directory the harness made for it (every
 * relay gets its own, so a generated admin password or a PGlite database never lands in the
 * working directory or in another test's relay).
 */
export async function startTestRelay(opts: TestRelayOptions): Promise<Relay> {
  const dataDir = opts.env?.RELAY_DATA_DIR === undefined ? await mkdtemp(join(tmpdir(), 'atrelay-test-')) : undefined
  const config = loadConfig({
    ...(opts.databaseUrl === undefined ? {} : { DATABASE_URL: opts.databaseUrl }),
    ...(dataDir === undefined ? {} : { RELAY_DATA_DIR: dataDir }),
    RELAY_DB_POOL_SIZE: '6',
    RELAY_DB_QUERY_POOL_SIZE: '4',
    // A busy machine must not turn a test's queries into load-shedding 503s (load-shedding.test.ts sets its own).
    RELAY_DB_QUERY_WAIT: '120s',
    RELAY_API_LISTEN: '127.0.0.1:0',
    RELAY_METRICS_LISTEN: '127.0.0.1:0',
    RELAY_ALLOW_INSECURE_HOSTS: 'true',
    RELAY_PLC_URL: opts.plcUrl,
    RELAY_ADMIN_PASSWORD: TEST_ADMIN_PASSWORD,
    RELAY_LENIENT: opts.lenient ? 'true' : 'false',
    ...opts.env,
  })
  // RELAY_TEST_LOG=debug shows the relay's own logs when a test needs explaining.
  const logger = opts.logger ?? createLogger((process.env.RELAY_TEST_LOG as LogLevel | undefined) ?? 'silent')
  const removeDataDir = () => (dataDir === undefined ? Promise.resolve() : rm(dataDir, { recursive: true, force: true }))
  let relay: Relay
  try {
    relay = await startRelay(config, logger, {
      backoff: { baseMs: 50, maxMs: 500 },
      maxBatchDelayMs: 5,
      addressLookup: opts.addressLookup ?? loopbackLookup,
      txtLookup: txtLookupFrom(opts.handles ?? new Map()),
      ...opts.overrides,
    })
  } catch (err) {
    await removeDataDir()
    throw err
  }
  const stop = relay.stop.bind(relay)
  let stopping: Promise<void> | undefined
  relay.stop = () => (stopping ??= stop().finally(removeDataDir))
  return relay
}

export function apiUrl(relay: Relay, path: string): string {
  return `http://127.0.0.1:${relay.apiAddress.port}${path}`
}

/** POST requestCrawl, asking again after a 503 (busy) as a PDS would; throws with the relay's answer unless 200. */
export async function requestCrawl(relay: Relay, hostname: string, timeoutMs = 10_000): Promise<void> {
  let last = ''
  await waitUntil(
    async () => {
      const res = await fetch(apiUrl(relay, '/xrpc/com.atproto.sync.requestCrawl'), {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ hostname }),
      })
      last = `${res.status} ${await res.text()}`
      if (res.status === 200) return true
      if (res.status !== 503) throw new Error(`requestCrawl ${hostname}: ${last}`)
      return false
    },
    () => `requestCrawl ${hostname} to be admitted (last answer ${last})`,
    timeoutMs,
  )
}

export async function getJson(relay: Relay, path: string): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(apiUrl(relay, path))
  const text = await res.text()
  return { status: res.status, body: text ? (JSON.parse(text) as Record<string, unknown>) : {} }
}

export interface HostStatusView {
  hostname: string
  seq: number
  accountCount: number
  status: string
  events?: { received: number; accepted: number; dropped: Record<string, number>; discontinuities: number }
  lastError?: { message: string; at: string | null }
}

export async function hostStatus(relay: Relay, hostname: string): Promise<HostStatusView> {
  const { status, body } = await getJson(relay, `/xrpc/com.atproto.sync.getHostStatus?hostname=${encodeURIComponent(hostname)}`)
  if (status !== 200) throw new Error(`getHostStatus ${hostname}: ${status} ${JSON.stringify(body)}`)
  return body as unknown as HostStatusView
}

export async function healthStatus(relay: Relay): Promise<number> {
  return (await fetch(apiUrl(relay, '/xrpc/_health'))).status
}

// ---------------------------------------------------------------- firehose consumer

export interface OutEvent {
  seq: number
  t: string
  /** `repo` of a #commit, `did` of the others */
  did: string
  body: Record<string, unknown>
  /** Date.now() when the frame arrived. */
  receivedAt: number
}

/** A subscribeRepos client that decodes and keeps every frame the relay sends. */
export class FirehoseReader {
  readonly events: OutEvent[] = []
  readonly errors: string[] = []
  private closed = false

  private constructor(private readonly ws: WebSocket) {
    ws.on('message', (data: Buffer, isBinary: boolean) => {
      if (!isBinary) {
        this.errors.push('text frame')
        return
      }
      try {
        const frame = decodeFrame(new Uint8Array(data))
        if (frame.op === -1) {
          this.errors.push(`${frame.error}: ${frame.message ?? ''}`)
          return
        }
        const body = frame.body
        const did = (frame.t === '#commit' ? body.repo : body.did) as string
        this.events.push({ seq: body.seq as number, t: frame.t, did, body, receivedAt: Date.now() })
      } catch (err) {
        this.errors.push(`undecodable: ${(err as Error).message}`)
      }
    })
    ws.on('close', () => (this.closed = true))
    ws.on('error', (err) => this.errors.push(`socket: ${err.message}`))
  }

  /** `cursor` 0 replays the whole log before going live. */
  static async connect(relay: Pick<Relay, 'apiAddress'>, cursor: number | null = 0): Promise<FirehoseReader> {
    const q = cursor === null ? '' : `?cursor=${cursor}`
    const ws = new WebSocket(`ws://127.0.0.1:${relay.apiAddress.port}/xrpc/com.atproto.sync.subscribeRepos${q}`, { perMessageDeflate: false })
    const reader = new FirehoseReader(ws)
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve())
      ws.once('error', reject)
    })
    return reader
  }

  get isClosed(): boolean {
    return this.closed
  }

  ofDid(did: string): OutEvent[] {
    return this.events.filter((e) => e.did === did)
  }

  async waitFor(cond: (events: OutEvent[]) => boolean, what: string | (() => string), timeoutMs = 10_000): Promise<void> {
    await waitUntil(() => cond(this.events), what, timeoutMs)
  }

  async close(): Promise<void> {
    if (this.closed || this.ws.readyState === WebSocket.CLOSED) return
    await new Promise<void>((resolve) => {
      this.ws.once('close', () => resolve())
      this.ws.close()
      setTimeout(() => {
        this.ws.terminate()
        resolve()
      }, 1_000).unref()
    })
  }
}

/** The `$link` of a CID field in a decoded body (CidLinkWrapper), or undefined. */
export function linkOf(value: unknown): string | undefined {
  if (value && typeof value === 'object' && typeof (value as { $link?: unknown }).$link === 'string') return (value as { $link: string }).$link
  return undefined
}

// ---------------------------------------------------------------- DID documents

/**
 * A loopback stand-in for the PLC directory: `GET /<did>` answers the document
 * set for it, 404 otherwise. For fixture DIDs (real production DIDs) that a
 * loopback PLC cannot register.
 */
export class DidDocServer {
  readonly docs = new Map<string, unknown>()
  /** DID → milliseconds to wait before answering (a slow directory). */
  readonly delays = new Map<string, number>()
  requests = 0

  private constructor(
    private readonly server: Server,
    readonly url: string,
  ) {}

  static async start(): Promise<DidDocServer> {
    const server = createServer()
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(0, '127.0.0.1', () => resolve())
    })
    const s = new DidDocServer(server, `http://localhost:${(server.address() as AddressInfo).port}`)
    server.on('request', (req, res) => {
      s.requests++
      const did = decodeURIComponent((req.url ?? '/').slice(1))
      const doc = s.docs.get(did)
      const text = doc === undefined ? JSON.stringify({ message: `DID not registered: ${did}` }) : JSON.stringify(doc)
      const answer = () => {
        res.writeHead(doc === undefined ? 404 : 200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) })
        res.end(text)
      }
      const delay = s.delays.get(did) ?? 0
      if (delay > 0) setTimeout(answer, delay).unref()
      else answer()
    })
    return s
  }

  async close(): Promise<void> {
    await new Promise<void>((resolve) => {
      this.server.close(() => resolve())
      this.server.closeAllConnections()
    })
  }
}

/** A DID document naming `pdsUrl` as the PDS. */
export function didDocument(did: string, handle: string, key: { type: string; publicKeyMultibase: string }, pdsUrl: string): Record<string, unknown> {
  return {
    '@context': ['https://www.w3.org/ns/did/v1', 'https://w3id.org/security/multikey/v1'],
    id: did,
    alsoKnownAs: [`at://${handle}`],
    verificationMethod: [{ id: `${did}#atproto`, type: key.type, controller: did, publicKeyMultibase: key.publicKeyMultibase }],
    service: [{ id: '#atproto_pds', type: 'AtprotoPersonalDataServer', serviceEndpoint: pdsUrl }],
  }
}
