/**
 * Firehose frame encoding for test peers: two concatenated DAG-CBOR objects
 * (header, body), exactly as a PDS writes them. Bodies are built from plain JS
 * values with `CidLinkWrapper` / `toBytes` for links and bytes, so `@atcute/cbor`
 * emits canonical (length-first sorted) maps.
 */
import { CidLinkWrapper, decode, decodeFirst, encode, toBytes } from '@atcute/cbor'

export type EventType = '#commit' | '#sync' | '#identity' | '#account'

/** An event not yet sequenced: the body has every field except `seq`. */
export interface PdsEvent {
  t: EventType
  body: Record<string, unknown>
}

export interface DecodedFrame {
  header: { op: number; t?: string }
  body: Record<string, unknown>
}

/** `{t, op: 1}` + body with `seq` set. */
export function encodeEventFrame(event: PdsEvent, seq: number): Uint8Array {
  return concat(encode({ t: event.t, op: 1 }), encode({ ...event.body, seq }))
}

/** Any message frame, body taken as is (may lack `seq`, e.g. `#info`). */
export function encodeMessageFrame(t: string, body: Record<string, unknown>): Uint8Array {
  return concat(encode({ t, op: 1 }), encode(body))
}

/** `{op: -1}` + `{error, message?}`, what a PDS sends before closing. */
export function encodeErrorFrame(error: string, message?: string): Uint8Array {
  const body: Record<string, unknown> = { error }
  if (message !== undefined) body.message = message
  return concat(encode({ op: -1 }), encode(body))
}

export function encodeInfoFrame(name: string, message?: string): Uint8Array {
  const body: Record<string, unknown> = { name }
  if (message !== undefined) body.message = message
  return encodeMessageFrame('#info', body)
}

/** Decodes header and body; throws on trailing bytes or a missing body. */
export function decodeFrame(bytes: Uint8Array): DecodedFrame {
  const [header, rest] = decodeFirst(bytes)
  const body = decode(rest)
  return { header: header as DecodedFrame['header'], body: body as Record<string, unknown> }
}

/** The `seq` of a message frame, or null if it has none (or is not a valid frame). */
export function frameSeq(bytes: Uint8Array): number | null {
  try {
    const { header, body } = decodeFrame(bytes)
    if (header.op !== 1) return null
    return typeof body.seq === 'number' ? body.seq : null
  } catch {
    return null
  }
}

/** Link to binary CID bytes (works with multiformats CIDs via `.bytes`). */
export function link(cid: { bytes: Uint8Array } | Uint8Array): CidLinkWrapper {
  return new CidLinkWrapper(cid instanceof Uint8Array ? cid : cid.bytes)
}

export const bytes = toBytes

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length)
  out.set(a, 0)
  out.set(b, a.length)
  return out
}
