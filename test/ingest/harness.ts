/**
 * A real ingest pipeline over a real database and sequencer, with identities
 * served by a static resolver the test controls. Frames are pushed directly
 * (no crawler); what the sequencer committed is collected in order.
 */
import { CidLinkWrapper, decode, decodeFirst, toBytes } from '@atcute/cbor'
import pino from 'pino'
import { Registry } from 'prom-client'
import { cidFromString } from '../../src/atproto/cid.js'
import { decodeFrame, encodeMessageFrame, type MessageFrame } from '../../src/atproto/frame.js'
import { parseDidDocKey } from '../../src/atproto/keys.js'
import { parsePdsEndpoint, type IdentityResult } from '../../src/identity/did-doc.js'
import { IdentityDirectory } from '../../src/identity/directory.js'
import { HostStats } from '../../src/stats/host-stats.js'
import { IngestPipeline, type IngestOptions } from '../../src/ingest/pipeline.js'
import type { UpstreamHost } from '../../src/ingest/types.js'
import { Sequencer } from '../../src/sequencer/sequencer.js'
import type { CommittedEvent } from '../../src/sequencer/types.js'
import type { StorageKind } from '../../src/storage/db.js'
import { createTestDatabase, type TestDatabase } from '../helpers/db.js'
import type { PdsEvent } from '../helpers/frames.js'

export const silentLogger = pino({ level: 'silent' })

export interface StaticIdentity {
  /** did:key or { type, publicKeyMultibase } */
  key: string | { type: string; publicKeyMultibase: string }
  pds: string
  handle?: string | null
}

export interface OutputEvent {
  seq: number
  t: string
  did: string
  body: Record<string, unknown>
}

export interface Harness {
  db: TestDatabase
  sequencer: Sequencer
  pipeline: IngestPipeline
  stats: HostStats
  registry: Registry
  identity: IdentityDirectory
  /** Every committed event, in seq order. */
  committed: CommittedEvent[]
  /** did → identity served by the resolver (mutable). */
  identities: Map<string, IdentityResult>
  /** did → how many times the resolver was called for it. */
  resolveCalls: Map<string, number>
  /** handle → did for bidirectional handle checks. */
  handles: Map<string, string>
  /** What the crawler does with a frame: opens its upstream ticket (when it has a seq) and pushes it. */
  push(host: UpstreamHost, frame: MessageFrame, seq: number | null): Promise<void> | undefined
  /** relay_upstream_ticket_errors_total (tickets resolved twice or left unresolved). */
  ticketErrors(): Promise<number>
  setIdentity(did: string, id: StaticIdentity): void
  addHost(hostname: string, opts?: { accountLimit?: number; lenient?: boolean | null; ssl?: boolean }): Promise<UpstreamHost>
  /** The decoded committed output. */
  output(): OutputEvent[]
  close(): Promise<void>
}

export function staticIdentity(did: string, id: StaticIdentity): IdentityResult {
  const key = typeof id.key === 'string' ? parseDidDocKey('Multikey', id.key.replace(/^did:key:/, '')) : parseDidDocKey(id.key.type, id.key.publicKeyMultibase)
  const pds = parsePdsEndpoint(id.pds)
  if (pds === null) throw new Error(`bad pds ${id.pds}`)
  return { status: 'ok', did, signingKey: key, pdsEndpoint: pds.endpoint, pdsHost: pds.host, handle: id.handle ?? null }
}

export async function createHarness(
  kind: StorageKind,
  opts: Partial<Omit<IngestOptions, 'storage' | 'identity' | 'sequencer' | 'stats' | 'logger' | 'registry'>> = {},
): Promise<Harness> {
  const db = await createTestDatabase(kind)
  const registry = new Registry()
  const identities = new Map<string, IdentityResult>()
  const resolveCalls = new Map<string, number>()
  const handles = new Map<string, string>()
  const identity = new IdentityDirectory({
    resolver: async (did) => {
      resolveCalls.set(did, (resolveCalls.get(did) ?? 0) + 1)
      return identities.get(did) ?? { status: 'not_found', did, error: 'unknown to the test resolver' }
    },
    handleResolver: {
      resolve: async (handle) => {
        const did = handles.get(handle)
        return did !== undefined ? { did, method: 'dns' } : { did: null, error: 'unknown handle' }
      },
    },
    storage: db.storage,
    cacheSize: 1000,
    goodTtlMs: 60_000,
    errorTtlMs: 1_000,
    forceRefreshIntervalMs: 0,
    logger: silentLogger,
    registry,
  })
  const sequencer = new Sequencer({
    storage: db.storage,
    initialSeq: 1,
    maxBatchDelayMs: 2,
    retentionIntervalMs: 0,
    logger: silentLogger,
    registry,
  })
  await sequencer.start()
  const committed: CommittedEvent[] = []
  sequencer.onCommitted((events) => committed.push(...events))
  const stats = new HostStats(registry)
  const pipeline = new IngestPipeline({
    storage: db.storage,
    identity,
    sequencer,
    stats,
    logger: silentLogger,
    registry,
    lenient: false,
    verifyWorkers: 0,
    ...opts,
  })
  return {
    db,
    sequencer,
    pipeline,
    stats,
    registry,
    identity,
    committed,
    identities,
    resolveCalls,
    handles,
    push(host, frame, seq) {
      return pipeline.push(host, frame, seq === null ? null : sequencer.openTicket(host.id, seq))
    },
    async ticketErrors() {
      const m = (await registry.getMetricsAsJSON()).find((x) => x.name === 'relay_upstream_ticket_errors_total')
      return (m?.values ?? []).reduce((sum, v) => sum + Number(v.value), 0)
    },
    setIdentity(did, id) {
      identities.set(did, staticIdentity(did, id))
      if (id.handle) handles.set(id.handle, did)
    },
    async addHost(hostname, o = {}) {
      const row = await db.storage.db
        .insertInto('host')
        .values({ hostname, ssl: o.ssl ?? true, account_limit: o.accountLimit ?? 1000, lenient: o.lenient ?? null, last_error: null, last_error_at: null })
        .returning(['id'])
        .executeTakeFirstOrThrow()
      return { id: row.id, hostname, ssl: o.ssl ?? true, accountLimit: o.accountLimit ?? 1000, lenient: o.lenient ?? null, trusted: false }
    },
    output() {
      return committed.map((e) => {
        const [header, rest] = decodeFirst(e.frame)
        const body = decode(rest) as Record<string, unknown>
        return { seq: e.seq, t: (header as { t: string }).t, did: e.did, body }
      })
    },
    async close() {
      await pipeline.stop(2_000)
      await sequencer.stop()
      await db.cleanup()
    },
  }
}

/** A PDS-style event as the crawler would hand it over: encoded, then decoded by the real frame decoder. */
export function toFrame(event: PdsEvent | { t: string; body: Record<string, unknown> }, seq: number): MessageFrame {
  const f = decodeFrame(encodeMessageFrame(event.t, { ...event.body, seq }))
  if (f.op !== 1) throw new Error('not a message frame')
  return f
}

/** A frame from raw bytes (e.g. a fixture's base64). */
export function frameFromBytes(bytes: Uint8Array): MessageFrame {
  const f = decodeFrame(bytes)
  if (f.op !== 1) throw new Error('not a message frame')
  return f
}

/** atproto JSON (`$bytes`, `$link`) → CBOR data model values. */
export function fromJsonModel(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(fromJsonModel)
  if (value !== null && typeof value === 'object') {
    const obj = value as Record<string, unknown>
    const keys = Object.keys(obj)
    if (keys.length === 1 && typeof obj.$bytes === 'string') return toBytes(Buffer.from(obj.$bytes, 'base64'))
    if (keys.length === 1 && typeof obj.$link === 'string') return new CidLinkWrapper(cidFromString(obj.$link))
    return Object.fromEntries(keys.map((k) => [k, fromJsonModel(obj[k])]))
  }
  return value
}

/** Body without `seq`, CIDs and bytes as comparable strings. */
export function comparable(body: Record<string, unknown>): unknown {
  const walk = (v: unknown): unknown => {
    if (v instanceof CidLinkWrapper) return { $link: v.$link }
    if (v instanceof Uint8Array) return { $bytes: Buffer.from(v).toString('base64') }
    if (v !== null && typeof v === 'object' && 'buf' in v && (v as { buf: unknown }).buf instanceof Uint8Array) {
      return { $bytes: Buffer.from((v as { buf: Uint8Array }).buf).toString('base64') }
    }
    if (Array.isArray(v)) return v.map(walk)
    if (v !== null && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, walk(x)]))
    return v
  }
  const { seq: _seq, ...rest } = body
  return walk(rest)
}

