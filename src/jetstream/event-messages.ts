/**
 * One relay event as Jetstream v1 messages (JETSTREAM.md): a `#commit` is one
 * `commit` message per op (record as data-model JSON, and its CID), `#identity`
 * and `#account` one message each, `#sync` none. Pure: no I/O. Built at most
 * once per event (jet-event.ts memoises it), so it may take its time.
 */
import { BytesWrapper, CidLinkWrapper } from '@atcute/cbor'
import { readCarSlice } from '../atproto/car.js'
import { cidToString } from '../atproto/cid.js'
import { decodeFrame } from '../atproto/frame.js'
import { recordJson } from './record-json.js'

export interface JetMessage {
  /** The op's collection for `commit` messages (the collection filter applies); null for identity and account. */
  collection: string | null
  /** The message's JSON text as UTF-8. */
  json: Buffer
}

export interface MessagesResult {
  messages: JetMessage[]
  /** Create/update ops left out because their record block was missing or undecodable (counted by the caller). */
  skippedOps: number
}

const NONE: MessagesResult = { messages: [], skippedOps: 0 }

/** The v1 messages of the relay frame `frame` (seq `seq`, stored time `timeUs`). Throws FrameError on an undecodable frame. */
export function jetstreamMessages(frame: Uint8Array, timeUs: number): MessagesResult {
  const decoded = decodeFrame(frame)
  if (decoded.op !== 1) return NONE
  const body = decoded.body
  switch (decoded.t) {
    case '#commit':
      return commitMessages(body, timeUs)
    case '#identity': {
      const did = String(body.did)
      const identity: Record<string, unknown> = { did, ...(typeof body.handle === 'string' ? { handle: body.handle } : {}), seq: body.seq, time: body.time }
      return { messages: [message(null, { did, time_us: timeUs, kind: 'identity', identity })], skippedOps: 0 }
    }
    case '#account': {
      const did = String(body.did)
      const account: Record<string, unknown> = { active: body.active, did, seq: body.seq, time: body.time, ...(typeof body.status === 'string' ? { status: body.status } : {}) }
      return { messages: [message(null, { did, time_us: timeUs, kind: 'account', account })], skippedOps: 0 }
    }
    default:
      return NONE
  }
}

function commitMessages(body: Record<string, unknown>, timeUs: number): MessagesResult {
  const did = String(body.repo)
  const rev = String(body.rev)
  const ops = Array.isArray(body.ops) ? (body.ops as Record<string, unknown>[]) : []
  if (ops.length === 0) return NONE
  const blocks = body.blocks instanceof BytesWrapper && body.blocks.buf.length > 0 ? readCarSlice(body.blocks.buf).blocks : undefined
  const head = `{"did":${JSON.stringify(did)},"time_us":${timeUs},"kind":"commit","commit":{"rev":${JSON.stringify(rev)},"operation":`
  const messages: JetMessage[] = []
  let skippedOps = 0
  for (const op of ops) {
    const action = op.action
    const path = typeof op.path === 'string' ? op.path : ''
    const slash = path.indexOf('/')
    const collection = slash < 0 ? path : path.slice(0, slash)
    const rkey = slash < 0 ? '' : path.slice(slash + 1)
    const where = `${JSON.stringify(action)},"collection":${JSON.stringify(collection)},"rkey":${JSON.stringify(rkey)}`
    if (action === 'delete') {
      messages.push({ collection, json: Buffer.from(`${head}${where}}}`) })
      continue
    }
    if (action !== 'create' && action !== 'update') {
      skippedOps++
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
    if (cid === undefined || record === undefined) {
      skippedOps++
      continue
    }
    messages.push({ collection, json: Buffer.from(`${head}${where},"record":${record},"cid":${JSON.stringify(cidToString(cid))}}}`) })
  }
  return { messages, skippedOps }
}

function message(collection: string | null, value: unknown): JetMessage {
  return { collection, json: Buffer.from(JSON.stringify(value)) }
}
