/**
 * What the splitter needs from one upstream relay frame: its type and seq,
 * without decoding the body. Pure: no socket, no counters.
 *
 * The splitter stores and forwards frames unchanged and verifies nothing (the
 * upstream relay did), so only the header is decoded; the body is walked once
 * by the bounded scan (cbor-scan.ts) for its top-level scalars (`seq`, `time`,
 * the account's `repo`/`did` for Jetstream's DID filter, an error's `error`/`message`). A malformed frame still costs a bounded scan.
 */
import { decodeFirstBounded, readHead, walkCanonicalMap } from '../atproto/cbor-scan.js'
import { binaryMessageBytes, isPlainMap, MAX_FRAME_BYTES } from '../atproto/frame.js'
import { FRAME_HEADER_LIMITS, SKIPPED_BODY_LIMITS } from '../atproto/limits.js'
import { EventKind, type EventKindCode } from '../storage/types.js'
import { clipUpstreamText as clip } from '../upstream-text.js'

/** Kind code stored for a sequenced type the relay itself never emits (kept and forwarded unchanged). */
export const OTHER_EVENT_KIND = 0

const KINDS: Record<string, EventKindCode> = {
  '#commit': EventKind.commit,
  '#sync': EventKind.sync,
  '#identity': EventKind.identity,
  '#account': EventKind.account,
}

export type UpstreamFrame =
  /** A sequenced event: stored under `seq` and forwarded as `bytes`. */
  | { kind: 'event'; seq: number; t: string; code: number; bytes: Uint8Array; time: string | undefined; did: string }
  /** `#info` (connection-level: never stored or forwarded), or a message without a seq. */
  | { kind: 'info'; t: string; name: string; message: string }
  | { kind: 'error'; error: string; message: string }
  /** Not a frame: the connection is ended. */
  | { kind: 'refused'; message: string }

export function readUpstreamFrame(data: Uint8Array | ArrayBuffer | readonly Uint8Array[], isBinary: boolean): UpstreamFrame {
  let bytes: Uint8Array
  try {
    bytes = binaryMessageBytes(data, isBinary)
  } catch (err) {
    return { kind: 'refused', message: (err as Error).message }
  }
  if (bytes.length > MAX_FRAME_BYTES) return { kind: 'refused', message: `frame of ${bytes.length} bytes exceeds ${MAX_FRAME_BYTES}` }
  let header: unknown
  let rest: Uint8Array
  try {
    ;[header, rest] = decodeFirstBounded(bytes, FRAME_HEADER_LIMITS, 'frame header')
  } catch (err) {
    return { kind: 'refused', message: `bad frame header: ${(err as Error).message}` }
  }
  if (!isPlainMap(header)) return { kind: 'refused', message: 'frame header is not a map' }
  const body = rest.length > 0 ? wantedFields(rest) : null
  if (body === null) return { kind: 'refused', message: 'frame body is missing or not a canonical map' }
  if (header.op === -1) {
    const error = typeof body.error === 'string' ? body.error : ''
    if (error === '') return { kind: 'refused', message: 'error frame without an error name' }
    return { kind: 'error', error: clip(error), message: clip(typeof body.message === 'string' ? body.message : '') }
  }
  if (header.op !== 1 || typeof header.t !== 'string' || header.t === '') return { kind: 'refused', message: `unknown frame header (op ${String(header.op)})` }
  const t = header.t
  const seq = body.seq
  if (t === '#info' || typeof seq !== 'number' || !Number.isSafeInteger(seq) || seq < 1) {
    return { kind: 'info', t: clip(t), name: clip(typeof body.name === 'string' ? body.name : ''), message: clip(typeof body.message === 'string' ? body.message : '') }
  }
  return { kind: 'event', seq, t, code: KINDS[t] ?? OTHER_EVENT_KIND, bytes, time: typeof body.time === 'string' ? body.time : undefined, did: eventDid(body) }
}

/** The account of an event: `repo` on #commit, `did` on the other kinds ('' when neither is a string). */
function eventDid(body: Record<string, string | number>): string {
  const did = typeof body.repo === 'string' ? body.repo : body.did
  return typeof did === 'string' ? did : ''
}

// ignoreBOM: a leading U+FEFF is kept, as @atcute/cbor's full decode keeps it, so every reader sees the same text.
const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true })
const WANTED = ['seq', 'time', 'error', 'message', 'name', 'repo', 'did'].map((name) => ({ name, bytes: new TextEncoder().encode(name) }))

/**
 * The WANTED top-level fields of a canonical body map that are integers or strings (others are
 * skipped); null if `buf` is not such a map. Keys are compared as bytes, never decoded.
 */
function wantedFields(buf: Uint8Array): Record<string, string | number> | null {
  const out: Record<string, string | number> = {}
  let bad = false
  const ok = walkCanonicalMap(buf, SKIPPED_BODY_LIMITS, (keyStart, keyLength, valueStart) => {
    const wanted = WANTED.find((w) => w.bytes.length === keyLength && w.bytes.every((b, i) => buf[keyStart + i] === b))
    if (wanted === undefined) return true
    const head = readHead(buf, valueStart)
    if (head?.major === 0 && Number.isSafeInteger(head.arg)) out[wanted.name] = head.arg
    else if (head?.major === 3) {
      try {
        out[wanted.name] = utf8.decode(buf.subarray(head.next, head.next + head.arg))
      } catch {
        bad = true
        return false
      }
    }
    return true
  })
  return ok && !bad ? out : null
}
