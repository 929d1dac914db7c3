/**
 * One relay event as Jetstream messages. `decodeJetEvent` reads the frame once
 * (ops, record blocks as data-model JSON, the upstream body of the other
 * kinds); `renderV1` and `renderV2` turn that into each wire's messages:
 * v1 (JETSTREAM.md) is one `commit` message per op, `identity` and `account`
 * one each, `#sync` none; v2 (subscribeEvents lexicon) wraps the same in its
 * `message` envelope with the seq and a µs datetime, and emits `#sync`.
 * Pure: no I/O. Built at most once per event and wire (jet-event.ts memoises it).
 */
import { BytesWrapper, CidLinkWrapper } from '@atcute/cbor'
import { readCarSlice } from '../atproto/car.js'
import { cidToString } from '../atproto/cid.js'
import { decodeFrame } from '../atproto/frame.js'
import { recordJson } from './record-json.js'

export type JetKind = 'commit' | 'identity' | 'account' | 'sync'

export interface JetMessage {
  kind: JetKind
  /** The op's collection for `commit` messages (the collection filter applies); null for the other kinds. */
  collection: string | null
  /** The message's JSON text as UTF-8. */
  json: Buffer
}

export interface DecodedOp {
  operation: string
  collection: string
  rkey: string
  /** Record JSON text and CID string, for creates and updates. */
  record?: string
  cid?: string
}

export type DecodedJetEvent =
  | { kind: 'commit'; did: string; rev: string; ops: DecodedOp[]; skippedOps: number }
  | { kind: 'identity' | 'account' | 'sync'; did: string; /** The upstream event body as data-model JSON text. */ body: string; skippedOps: 0 }
  | { kind: 'none'; skippedOps: 0 }

const NONE: DecodedJetEvent = { kind: 'none', skippedOps: 0 }

/** Reads a relay frame. Throws FrameError (or CarError) on an undecodable frame. */
export function decodeJetEvent(frame: Uint8Array): DecodedJetEvent {
  const decoded = decodeFrame(frame)
  if (decoded.op !== 1) return NONE
  const body = decoded.body
  switch (decoded.t) {
    case '#commit':
      return decodeCommit(body)
    case '#identity':
      return { kind: 'identity', did: String(body.did), body: JSON.stringify(body), skippedOps: 0 }
    case '#account':
      return { kind: 'account', did: String(body.did), body: JSON.stringify(body), skippedOps: 0 }
    case '#sync':
      return { kind: 'sync', did: String(body.did), body: JSON.stringify(body), skippedOps: 0 }
    default:
      return NONE
  }
}

function decodeCommit(body: Record<string, unknown>): DecodedJetEvent {
  const ops = Array.isArray(body.ops) ? (body.ops as Record<string, unknown>[]) : []
  const blocks = ops.length > 0 && body.blocks instanceof BytesWrapper && body.blocks.buf.length > 0 ? readCarSlice(body.blocks.buf).blocks : undefined
  const out: DecodedOp[] = []
  let skippedOps = 0
  for (const op of ops) {
    const operation = op.action
    const path = typeof op.path === 'string' ? op.path : ''
    const slash = path.indexOf('/')
    const collection = slash < 0 ? path : path.slice(0, slash)
    const rkey = slash < 0 ? '' : path.slice(slash + 1)
    if (operation === 'delete') {
      out.push({ operation, collection, rkey })
      continue
    }
    const cid = op.cid instanceof CidLinkWrapper ? op.cid.bytes : undefined
    const block = cid !== undefined ? blocks?.get(cid) : undefined
    let record: string | undefined
    try {
      record = block !== undefined ? recordJson(block) : undefined
    } catch {
      record = undefined
    }
    if ((operation !== 'create' && operation !== 'update') || cid === undefined || record === undefined) {
      skippedOps++
      continue
    }
    out.push({ operation, collection, rkey, record, cid: cidToString(cid) })
  }
  return { kind: 'commit', did: String(body.repo), rev: String(body.rev), ops: out, skippedOps }
}

/** The v1 `/subscribe` messages. */
export function renderV1(e: DecodedJetEvent, timeUs: number): JetMessage[] {
  if (e.kind === 'none' || e.kind === 'sync') return []
  const did = JSON.stringify(e.did)
  if (e.kind !== 'commit') {
    // The upstream body minus nothing: v1 identity/account carry did, seq, time and the kind's own fields.
    return [{ kind: e.kind, collection: null, json: Buffer.from(`{"did":${did},"time_us":${timeUs},"kind":"${e.kind}","${e.kind}":${e.body}}`) }]
  }
  const head = `{"did":${did},"time_us":${timeUs},"kind":"commit","commit":{"rev":${JSON.stringify(e.rev)},`
  return e.ops.map((op) => ({ kind: 'commit', collection: op.collection, json: Buffer.from(`${head}${opFields(op)}}}`) }))
}

/** The v2 `subscribeEvents` messages (xrpc.v1.json `message` envelopes). */
export function renderV2(e: DecodedJetEvent, seq: number, timeUs: number): JetMessage[] {
  if (e.kind === 'none') return []
  const common = `"seq":${seq},"did":${JSON.stringify(e.did)},"time":"${microsecondTime(timeUs)}"`
  const envelope = (kind: JetKind, payload: string) => `{"$type":"message","payload":{"$type":"network.bsky.jetstream.subscribeEvents#${kind}",${payload}}}`
  if (e.kind !== 'commit') return [{ kind: e.kind, collection: null, json: Buffer.from(envelope(e.kind, `${common},"${e.kind}":${e.body}`)) }]
  const rev = `"rev":${JSON.stringify(e.rev)}`
  return e.ops.map((op) => ({ kind: 'commit', collection: op.collection, json: Buffer.from(envelope('commit', `${common},${rev},${opFields(op)}`)) }))
}

function opFields(op: DecodedOp): string {
  const where = `"operation":${JSON.stringify(op.operation)},"collection":${JSON.stringify(op.collection)},"rkey":${JSON.stringify(op.rkey)}`
  return op.record === undefined ? where : `${where},"record":${op.record},"cid":${JSON.stringify(op.cid)}`
}

/** Unix µs as an RFC 3339 datetime with microsecond precision (`2026-12-02T02:18:08.123456Z`). */
export function microsecondTime(timeUs: number): string {
  const ms = Math.floor(timeUs / 1000)
  const iso = new Date(ms).toISOString() // …:08.123Z
  return `${iso.slice(0, -1)}${String(timeUs % 1000).padStart(3, '0')}Z`
}

/** v1 messages straight from a frame (tests and the benchmark). */
export function jetstreamMessages(frame: Uint8Array, timeUs: number): { messages: JetMessage[]; skippedOps: number } {
  const decoded = decodeJetEvent(frame)
  return { messages: renderV1(decoded, timeUs), skippedOps: decoded.skippedOps }
}
