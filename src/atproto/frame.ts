/**
 * Event-stream frames: two DRISL-CBOR items back to back, a header `{t, op}`
 * and a body map (PROTOCOL.md §1.2).
 *
 * Decoding uses `@atcute/cbor`, which rejects non-canonical input (key order,
 * non-minimal integers, indefinite lengths). Decoded byte strings and CIDs
 * are views into the frame: callers copy what they keep.
 */
import { BytesWrapper, decodeFirst, encode } from '@atcute/cbor'
import { lastHead, readHeadAt, scalarAt, scanItem, shallowScalars, walkCanonicalMap, SCAN_TOO_DEEP, SCAN_TOO_MANY_ITEMS, type CborLimitReason, type CborLimits } from './cbor-scan.js'
import { FRAME_BODY_LIMITS, FRAME_HEADER_LIMITS, MAX_FRAME_BYTES, SKIPPED_BODY_LIMITS } from './limits.js'

export { MAX_FRAME_BYTES }

export type FrameErrorReason = 'bad-frame' | 'too-big' | CborLimitReason

export class FrameError extends Error {
  readonly reason: FrameErrorReason
  constructor(reason: FrameErrorReason, message: string) {
    super(message)
    this.name = 'FrameError'
    this.reason = reason
  }
}

export interface MessageFrame {
  op: 1
  t: string
  /**
   * The decoded body for the types the relay handles (DECODED_TYPES). For any
   * other type (#info, unknown, removed) only its top-level scalar fields
   * (`seq`, `name`, `message`, …): such bodies are never fully decoded.
   */
  body: Record<string, unknown>
  /** The raw body item: a view into the frame bytes. */
  bodyBytes: Uint8Array
  /** #commit and #sync: the sizes checked before anything is verified. */
  sizes?: RepoBodySizes
}

export interface RepoBodySizes {
  /** The byte length of `blocks`, if it is a byte string. */
  blocks: number | undefined
  /** The item count of `ops`, if it is an array. */
  ops: number | undefined
}

/**
 * How much of a #commit/#sync body decodeFrame decodes. `full`: everything (ops, CIDs, `blocks` as
 * a view). `shallow`: only the top-level fields the socket thread needs
 * (`seq`, `repo`, `did`, `rev`, `since`, `time`, when they are scalars) and the sizes of `blocks` and `ops`; verification decodes the body where it runs (a verify worker), so the
 * thread that reads the sockets never decodes it in full.
 */
export type RepoBodyDecoding = 'full' | 'shallow'

/** Message types whose blocks and ops are decoded only where they are verified, in `shallow` mode. */
const REPO_TYPES: ReadonlySet<string> = new Set(['#commit', '#sync'])

export interface ErrorFrame {
  op: -1
  error: string
  message?: string
}

/** Message types whose bodies are decoded in full; every other body is only skip-scanned. */
export const DECODED_TYPES: ReadonlySet<string> = new Set(['#commit', '#sync', '#identity', '#account'])

export function isPlainMap(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && Object.getPrototypeOf(value) === Object.prototype
}

/** End of the item at `pos`, or FrameError: over a decode limit, or not well-formed. */
function scanOrRefuse(bytes: Uint8Array, pos: number, limits: CborLimits, what: string): number {
  const end = scanItem(bytes, pos, limits)
  if (end >= 0) return end
  if (end === SCAN_TOO_DEEP) throw new FrameError('too-deep', `${what} nests deeper than ${limits.maxDepth}`)
  if (end === SCAN_TOO_MANY_ITEMS) throw new FrameError('too-many-items', `${what} has more than ${limits.maxItems} items`)
  throw new FrameError('bad-frame', `invalid CBOR in ${what}`)
}

function decodeItem(bytes: Uint8Array, what: string): unknown {
  try {
    return decodeFirst(bytes)[0]
  } catch (err) {
    throw new FrameError('bad-frame', `invalid CBOR in ${what}: ${(err as Error).message}`)
  }
}

/**
 * Decode one binary frame. Throws FrameError for anything that is not exactly
 * a valid header + body. The header is checked first; each item is scanned
 * against its decode limits (limits.ts) before anything is decoded.
 */
export function decodeFrame(bytes: Uint8Array, repoBodies: RepoBodyDecoding = 'full'): MessageFrame | ErrorFrame {
  if (bytes.length > MAX_FRAME_BYTES) {
    throw new FrameError('too-big', `frame of ${bytes.length} bytes exceeds ${MAX_FRAME_BYTES}`)
  }
  const headerEnd = scanOrRefuse(bytes, 0, FRAME_HEADER_LIMITS, 'frame header')
  const header = decodeItem(bytes.subarray(0, headerEnd), 'frame header')
  if (!isPlainMap(header)) throw new FrameError('bad-frame', 'frame header is not a map')
  const op = header.op
  const t = header.t
  if (op === 1) {
    if (typeof t !== 'string' || t.length === 0) throw new FrameError('bad-frame', 'message frame without a type')
  } else if (op === -1) {
    // `t` should be absent on error frames; indigo writes "" — accept both.
    if (t !== undefined && t !== '') throw new FrameError('bad-frame', 'error frame with a message type')
  } else if (op === undefined) {
    throw new FrameError('bad-frame', 'frame header without op')
  } else {
    throw new FrameError('bad-frame', `unknown frame op ${String(op)}`)
  }
  if (headerEnd === bytes.length) throw new FrameError('bad-frame', 'frame without a body')
  const decoded = op === 1 && DECODED_TYPES.has(t as string)
  const bodyEnd = scanOrRefuse(bytes, headerEnd, decoded ? FRAME_BODY_LIMITS : SKIPPED_BODY_LIMITS, 'frame body')
  if (bodyEnd !== bytes.length) throw new FrameError('bad-frame', `${bytes.length - bodyEnd} trailing bytes after frame body`)
  const bodyBytes = bytes.subarray(headerEnd)
  if (op === 1 && REPO_TYPES.has(t as string)) return repoFrame(t as string, bodyBytes, repoBodies)
  let body: unknown
  if (decoded) body = decodeItem(bodyBytes, 'frame body')
  else body = shallowScalars(bodyBytes, SKIPPED_BODY_LIMITS)
  if (!isPlainMap(body)) throw new FrameError('bad-frame', 'frame body is not a map')
  if (op === 1) return { op: 1, t: t as string, body, bodyBytes }
  const { error, message } = body
  if (typeof error !== 'string') throw new FrameError('bad-frame', 'error frame without an error name')
  if (message !== undefined && typeof message !== 'string') {
    throw new FrameError('bad-frame', 'error frame message is not a string')
  }
  return message === undefined ? { op: -1, error } : { op: -1, error, message }
}

/** A #commit/#sync frame, its body decoded in full or only shallowly (RepoBodyDecoding). */
function repoFrame(t: string, bodyBytes: Uint8Array, repoBodies: RepoBodyDecoding): MessageFrame {
  if (repoBodies === 'shallow') return shallowRepoFrame(t, bodyBytes)
  const body = decodeItem(bodyBytes, 'frame body')
  if (!isPlainMap(body)) throw new FrameError('bad-frame', 'frame body is not a map')
  const { blocks, ops } = body
  const sizes: RepoBodySizes = { blocks: blocks instanceof BytesWrapper ? blocks.buf.length : undefined, ops: Array.isArray(ops) ? ops.length : undefined }
  return { op: 1, t, body, bodyBytes, sizes }
}

/** The fields read in shallow mode, as key bytes (compared without decoding each key). */
const SHALLOW_SCALARS = ['seq', 'repo', 'did', 'rev', 'since', 'time'].map((name) => ({ name, bytes: new TextEncoder().encode(name) }))
const BLOCKS_KEY = new TextEncoder().encode('blocks')
const OPS_KEY = new TextEncoder().encode('ops')

function keyIs(buf: Uint8Array, start: number, length: number, key: Uint8Array): boolean {
  if (length !== key.length) return false
  for (let i = 0; i < length; i++) if (buf[start + i] !== key[i]) return false
  return true
}

/**
 * The top-level fields of an already scanned #commit/#sync body, without decoding anything
 * nested: a canonical walk of the map (walkCanonicalMap), keys matched as bytes (no decode per key).
 */
function shallowRepoFrame(t: string, bodyBytes: Uint8Array): MessageFrame {
  const body: Record<string, unknown> = {}
  const sizes: RepoBodySizes = { blocks: undefined, ops: undefined }
  const ok = walkCanonicalMap(bodyBytes, FRAME_BODY_LIMITS, (keyStart, keyLength, valueStart) => {
    const major = readHeadAt(bodyBytes, valueStart)
    if (major < 0) return true
    const arg = lastHead.arg
    if (major === 2 && keyIs(bodyBytes, keyStart, keyLength, BLOCKS_KEY)) sizes.blocks = arg
    else if (major === 4 && keyIs(bodyBytes, keyStart, keyLength, OPS_KEY)) sizes.ops = arg
    else {
      for (const field of SHALLOW_SCALARS) {
        if (!keyIs(bodyBytes, keyStart, keyLength, field.bytes)) continue
        const value = scalarAt(bodyBytes, valueStart)
        if (value !== undefined) body[field.name] = value
        break
      }
    }
    return true
  })
  if (!ok) throw new FrameError('bad-frame', 'frame body is not a map with canonical keys')
  return { op: 1, t, body, bodyBytes, sizes }
}

/**
 * The bytes of a binary WebSocket message, or FrameError for text frames
 * (a protocol error). Accepts the shapes `ws` hands to 'message' listeners.
 */
export function binaryMessageBytes(data: Uint8Array | ArrayBuffer | readonly Uint8Array[], isBinary: boolean): Uint8Array {
  if (!isBinary) throw new FrameError('bad-frame', 'text frame on a binary event stream')
  if (data instanceof Uint8Array) return data
  if (data instanceof ArrayBuffer) return new Uint8Array(data)
  return Buffer.concat(data as Uint8Array[])
}

const headerCache = new Map<string, Uint8Array>()
const HEADER_CACHE_LIMIT = 256

/** Canonical `{t, op: 1}` header bytes, cached per type. */
export function messageHeader(t: string): Uint8Array {
  let header = headerCache.get(t)
  if (header === undefined) {
    header = encode({ t, op: 1 })
    // Types are a small fixed set in practice; the bound only guards against misuse.
    if (headerCache.size < HEADER_CACHE_LIMIT) headerCache.set(t, header)
  }
  return header
}

const ERROR_HEADER = encode({ op: -1 })

function concat2(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length)
  out.set(a, 0)
  out.set(b, a.length)
  return out
}

/**
 * Header `{t, op: 1}` + body. Byte fields in `body` must be `@atcute/cbor`
 * BytesWrapper (toBytes) and links CidLinkWrapper (toCidLink); `undefined`
 * fields are omitted.
 */
export function encodeMessageFrame(t: string, body: Record<string, unknown>): Uint8Array {
  return concat2(messageHeader(t), encode(body))
}

export function encodeErrorFrame(error: string, message?: string): Uint8Array {
  return concat2(ERROR_HEADER, encode(message === undefined ? { error } : { error, message }))
}

export function encodeInfoFrame(name: string, message?: string): Uint8Array {
  return encodeMessageFrame('#info', message === undefined ? { name } : { name, message })
}

/** Where the `seq` value sits in a canonical body map, or null if the scan cannot tell. */
function findSeqValue(body: Uint8Array): { start: number; end: number } | null {
  let found: { start: number; end: number } | null = null
  const ok = walkCanonicalMap(body, FRAME_BODY_LIMITS, (keyStart, keyLength, valueStart, valueEnd) => {
    if (keyLength !== 3 || body[keyStart] !== 0x73 || body[keyStart + 1] !== 0x65 || body[keyStart + 2] !== 0x71) return true
    // Only a non-negative integer is spliced; anything else goes through re-encoding.
    if (readHeadAt(body, valueStart) === 0) found = { start: valueStart, end: valueEnd }
    return false
  })
  return ok ? found : null
}

/**
 * A complete `op: 1` frame whose body is `bodyBytes` with its `seq` set to
 * `seq`. The canonical body bytes are spliced (key order is unchanged, so the
 * result stays canonical); a body without a `seq` integer is re-encoded.
 */
export function frameWithSeq(t: string, bodyBytes: Uint8Array, seq: number): Uint8Array {
  return frameWithSeqAfter(0, t, bodyBytes, seq)
}

/**
 * `frameWithSeq`, written `headroom` bytes into a buffer of its own (returned
 * whole: the frame is `subarray(headroom)`), so a transport header can go in
 * front of it without copying the frame.
 */
export function frameWithSeqAfter(headroom: number, t: string, bodyBytes: Uint8Array, seq: number): Uint8Array {
  if (!Number.isSafeInteger(seq) || seq < 0) throw new RangeError(`invalid seq ${seq}`)
  const header = messageHeader(t)
  const at = findSeqValue(bodyBytes)
  if (at === null) return withHeadroom(headroom, reencodeWithSeq(header, bodyBytes, seq))
  const seqLength = uintHeadLength(seq)
  const out = new Uint8Array(headroom + header.length + at.start + seqLength + (bodyBytes.length - at.end))
  out.set(header, headroom)
  let p = headroom + header.length
  out.set(bodyBytes.subarray(0, at.start), p)
  p += at.start
  writeUintHead(out, p, seq)
  p += seqLength
  out.set(bodyBytes.subarray(at.end), p)
  return out
}

/** Bytes of a non-negative integer's canonical CBOR encoding (major type 0, shortest head). */
function uintHeadLength(n: number): number {
  return n < 24 ? 1 : n < 0x100 ? 2 : n < 0x10000 ? 3 : n < 0x100000000 ? 5 : 9
}

/**
 * Writes `n` (a non-negative safe integer) as canonical CBOR at `out[p]`: done
 * here because the general encoder sets up a whole encoding state (and a
 * pooled buffer) for every seq it splices.
 */
function writeUintHead(out: Uint8Array, p: number, n: number): void {
  if (n < 24) {
    out[p] = n
  } else if (n < 0x100) {
    out[p] = 0x18
    out[p + 1] = n
  } else if (n < 0x10000) {
    out[p] = 0x19
    out[p + 1] = n >>> 8
    out[p + 2] = n & 0xff
  } else if (n < 0x100000000) {
    out[p] = 0x1a
    writeUint32(out, p + 1, n)
  } else {
    out[p] = 0x1b
    writeUint32(out, p + 1, Math.floor(n / 0x100000000))
    writeUint32(out, p + 5, n >>> 0)
  }
}

function writeUint32(out: Uint8Array, p: number, n: number): void {
  out[p] = n >>> 24
  out[p + 1] = (n >>> 16) & 0xff
  out[p + 2] = (n >>> 8) & 0xff
  out[p + 3] = n & 0xff
}

function withHeadroom(headroom: number, frame: Uint8Array): Uint8Array {
  if (headroom === 0) return frame
  const out = new Uint8Array(headroom + frame.length)
  out.set(frame, headroom)
  return out
}

function reencodeWithSeq(header: Uint8Array, bodyBytes: Uint8Array, seq: number): Uint8Array {
  const end = scanOrRefuse(bodyBytes, 0, FRAME_BODY_LIMITS, 'body to re-sequence')
  if (end !== bodyBytes.length) throw new FrameError('bad-frame', 'cannot re-sequence body: trailing bytes')
  const body = decodeItem(bodyBytes, 'body to re-sequence')
  if (!isPlainMap(body)) throw new FrameError('bad-frame', 'cannot re-sequence a body that is not a map')
  body.seq = seq
  return concat2(header, encode(body))
}
