/**
 * Event-stream frames: two DRISL-CBOR items back to back, a header `{t, op}`
 * and a body map (PROTOCOL.md §1.2).
 *
 * Decoding uses `@atcute/cbor`, which rejects non-canonical input (key order,
 * non-minimal integers, indefinite lengths). Decoded byte strings and CIDs
 * are views into the frame: callers copy what they keep.
 */
import { decodeFirst, encode } from '@atcute/cbor'

export type FrameErrorReason = 'bad-frame' | 'too-big'

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
  body: Record<string, unknown>
  /** The raw body item: a view into the frame bytes. */
  bodyBytes: Uint8Array
}

export interface ErrorFrame {
  op: -1
  error: string
  message?: string
}

/** Hard limit for one WebSocket frame on the firehose (sync spec). */
export const MAX_FRAME_BYTES = 5_000_000

export function isPlainMap(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && Object.getPrototypeOf(value) === Object.prototype
}

/** Decode one binary frame. Throws FrameError for anything that is not exactly a valid header + body. */
export function decodeFrame(bytes: Uint8Array): MessageFrame | ErrorFrame {
  if (bytes.length > MAX_FRAME_BYTES) {
    throw new FrameError('too-big', `frame of ${bytes.length} bytes exceeds ${MAX_FRAME_BYTES}`)
  }
  let header: unknown
  let rest: Uint8Array
  let body: unknown
  let remainder: Uint8Array
  try {
    ;[header, rest] = decodeFirst(bytes)
    ;[body, remainder] = decodeFirst(rest)
  } catch (err) {
    throw new FrameError('bad-frame', `invalid CBOR in frame: ${(err as Error).message}`)
  }
  if (remainder.length !== 0) throw new FrameError('bad-frame', `${remainder.length} trailing bytes after frame body`)
  if (!isPlainMap(header)) throw new FrameError('bad-frame', 'frame header is not a map')
  if (!isPlainMap(body)) throw new FrameError('bad-frame', 'frame body is not a map')
  const op = header.op
  if (op === 1) {
    const t = header.t
    if (typeof t !== 'string' || t.length === 0) throw new FrameError('bad-frame', 'message frame without a type')
    return { op: 1, t, body, bodyBytes: rest.subarray(0, rest.length - remainder.length) }
  }
  if (op === -1) {
    // `t` should be absent on error frames; indigo writes "" — accept both.
    const t = header.t
    if (t !== undefined && t !== '') throw new FrameError('bad-frame', 'error frame with a message type')
    const { error, message } = body
    if (typeof error !== 'string') throw new FrameError('bad-frame', 'error frame without an error name')
    if (message !== undefined && typeof message !== 'string') {
      throw new FrameError('bad-frame', 'error frame message is not a string')
    }
    return message === undefined ? { op: -1, error } : { op: -1, error, message }
  }
  if (op === undefined) throw new FrameError('bad-frame', 'frame header without op')
  throw new FrameError('bad-frame', `unknown frame op ${String(op)}`)
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
  const first = body[0]
  if (first === undefined || first >> 5 !== 5) return null
  const head = readHead(body, 0)
  if (head === null) return null
  let pos = head.next
  let prevStart = 0
  let prevLength = -1
  for (let i = 0; i < head.arg; i++) {
    const key = readHead(body, pos)
    if (key === null || key.major !== 3) return null
    const keyStart = key.next
    const keyEnd = keyStart + key.arg
    if (keyEnd > body.length) return null
    if (!keyAfter(body, prevStart, prevLength, keyStart, key.arg)) return null
    prevStart = keyStart
    prevLength = key.arg
    const valueStart = keyEnd
    const valueEnd = skipItem(body, valueStart, 0)
    if (valueEnd < 0) return null
    if (key.arg === 3 && body[keyStart] === 0x73 && body[keyStart + 1] === 0x65 && body[keyStart + 2] === 0x71) {
      const value = readHead(body, valueStart)
      // Only a non-negative integer is spliced; anything else goes through re-encoding.
      if (value === null || value.major !== 0) return null
      return { start: valueStart, end: valueEnd }
    }
    pos = valueEnd
  }
  return null
}

/** Canonical key order: shorter first, then bytewise. */
function keyAfter(buf: Uint8Array, prevStart: number, prevLength: number, start: number, length: number): boolean {
  if (length !== prevLength) return length > prevLength
  for (let i = 0; i < length; i++) {
    const d = (buf[start + i] as number) - (buf[prevStart + i] as number)
    if (d !== 0) return d > 0
  }
  return false
}

interface Head {
  major: number
  info: number
  arg: number
  next: number
}

/** Reads one CBOR initial byte and its argument. */
function readHead(buf: Uint8Array, pos: number): Head | null {
  const b = buf[pos]
  if (b === undefined) return null
  const major = b >> 5
  const info = b & 0x1f
  if (info < 24) return { major, info, arg: info, next: pos + 1 }
  let len: number
  if (info === 24) len = 1
  else if (info === 25) len = 2
  else if (info === 26) len = 4
  else if (info === 27) len = 8
  else return null
  if (pos + 1 + len > buf.length) return null
  let arg = 0
  for (let i = 1; i <= len; i++) arg = arg * 256 + (buf[pos + i] as number)
  // Non-minimal arguments are not canonical; the caller then falls back to re-encoding.
  // (Major 7 with info 25..27 is a float, whose width is fixed, not an argument.)
  if (major !== 7 && arg < (len === 1 ? 24 : len === 2 ? 0x100 : len === 4 ? 0x10000 : 0x100000000)) return null
  return { major, info, arg, next: pos + 1 + len }
}

/** End offset of the CBOR item at `pos`, or -1 if malformed. */
function skipItem(buf: Uint8Array, pos: number, depth: number): number {
  if (depth > 64) return -1
  const head = readHead(buf, pos)
  if (head === null) return -1
  switch (head.major) {
    case 0:
    case 1:
      return head.next
    case 2:
    case 3: {
      const end = head.next + head.arg
      return end > buf.length ? -1 : end
    }
    case 4: {
      let p = head.next
      for (let i = 0; i < head.arg; i++) {
        p = skipItem(buf, p, depth + 1)
        if (p < 0) return -1
      }
      return p
    }
    case 5: {
      let p = head.next
      for (let i = 0; i < head.arg * 2; i++) {
        p = skipItem(buf, p, depth + 1)
        if (p < 0) return -1
      }
      return p
    }
    case 6:
      return skipItem(buf, head.next, depth + 1)
    default:
      // simple values and floats: the head already covers their bytes
      return head.info === 31 ? -1 : head.next
  }
}

/**
 * A complete `op: 1` frame whose body is `bodyBytes` with its `seq` set to
 * `seq`. The canonical body bytes are spliced (key order is unchanged, so the
 * result stays canonical); a body without a `seq` integer is re-encoded.
 */
export function frameWithSeq(t: string, bodyBytes: Uint8Array, seq: number): Uint8Array {
  if (!Number.isSafeInteger(seq) || seq < 0) throw new RangeError(`invalid seq ${seq}`)
  const header = messageHeader(t)
  const at = findSeqValue(bodyBytes)
  if (at === null) return reencodeWithSeq(header, bodyBytes, seq)
  const seqBytes = encode(seq)
  const out = new Uint8Array(header.length + at.start + seqBytes.length + (bodyBytes.length - at.end))
  out.set(header, 0)
  let p = header.length
  out.set(bodyBytes.subarray(0, at.start), p)
  p += at.start
  out.set(seqBytes, p)
  p += seqBytes.length
  out.set(bodyBytes.subarray(at.end), p)
  return out
}

function reencodeWithSeq(header: Uint8Array, bodyBytes: Uint8Array, seq: number): Uint8Array {
  let body: unknown
  try {
    const [value, remainder] = decodeFirst(bodyBytes)
    if (remainder.length !== 0) throw new Error('trailing bytes')
    body = value
  } catch (err) {
    throw new FrameError('bad-frame', `cannot re-sequence body: ${(err as Error).message}`)
  }
  if (!isPlainMap(body)) throw new FrameError('bad-frame', 'cannot re-sequence a body that is not a map')
  body.seq = seq
  return concat2(header, encode(body))
}
