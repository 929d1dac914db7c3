/**
 * Bounded CBOR scanning: every byte a host sends passes through here before
 * the generic `@atcute/cbor` decoder sees it.
 *
 * The decoder has no limits: a 5 MB frame holding a 5-million-deep array
 * costs seconds of event loop and ~500 MB. `scanItem` walks one item's heads
 * without building anything (iteratively: no recursion, no stack overflow),
 * counting items and nesting, and stops at the first limit. Byte and text
 * strings are skipped by length, so a scan costs at most `maxItems` steps
 * whatever the input size, and the decode after it is linear in a bounded
 * number of items.
 *
 * The scan accepts everything the decoder accepts (it also rejects
 * non-minimal arguments, which the decoder refuses too); it does not check
 * the rest of canonical form (key order, key types, tags), which stays the
 * decoder's job.
 */
import { decodeFirst } from '@atcute/cbor'

export type CborLimitReason = 'too-deep' | 'too-many-items'

export interface CborLimits {
  /** Most nested arrays, maps and tags on any path (a scalar alone is 0, `{a: [1]}` is 2). */
  maxDepth: number
  /** Most data items in total: every head counts once (a map entry is two, a CID link two). */
  maxItems: number
}

/** An item over a decode limit; `reason` is the drop reason. */
export class CborLimitError extends Error {
  override readonly name = 'CborLimitError'
  constructor(
    readonly reason: CborLimitReason,
    message: string,
  ) {
    super(message)
  }
}

/** Negative results of `scanItem`. */
export const SCAN_MALFORMED = -1
export const SCAN_TOO_DEEP = -2
export const SCAN_TOO_MANY_ITEMS = -3

export interface Head {
  major: number
  info: number
  arg: number
  next: number
}

/** Reads one CBOR initial byte and its argument; null if truncated, indefinite or not minimally encoded. */
export function readHead(buf: Uint8Array, pos: number): Head | null {
  return readHeadAt(buf, pos) >= 0 ? { major: lastHead.major, info: lastHead.info, arg: lastHead.arg, next: lastHead.next } : null
}

/**
 * The head `readHeadAt` read last. One per thread and overwritten by the next
 * read: the hot paths (every key and value of every frame body) read heads
 * without allocating an object each; copy what must outlive the next read.
 */
export const lastHead: Head = { major: 0, info: 0, arg: 0, next: 0 }

/** `readHead` into `lastHead`, returning its major type; −1 (and `lastHead` unspecified) where `readHead` gives null. */
export function readHeadAt(buf: Uint8Array, pos: number): number {
  const b = buf[pos]
  if (b === undefined) return -1
  const major = b >> 5
  const info = b & 0x1f
  if (info < 24) {
    lastHead.major = major
    lastHead.info = info
    lastHead.arg = info
    lastHead.next = pos + 1
    return major
  }
  const len = argumentBytes(info)
  if (len === 0 || pos + 1 + len > buf.length) return -1
  const arg = readArgument(buf, pos + 1, len)
  if (major !== 7 && arg < minimumFor(len)) return -1
  lastHead.major = major
  lastHead.info = info
  lastHead.arg = arg
  lastHead.next = pos + 1 + len
  return major
}

function argumentBytes(info: number): number {
  return info === 24 ? 1 : info === 25 ? 2 : info === 26 ? 4 : info === 27 ? 8 : 0
}

function readArgument(buf: Uint8Array, pos: number, len: number): number {
  let arg = 0
  for (let i = 0; i < len; i++) arg = arg * 256 + (buf[pos + i] as number)
  return arg
}

/** The smallest argument that needs `len` bytes (smaller ones are not canonical). */
function minimumFor(len: number): number {
  return len === 1 ? 24 : len === 2 ? 0x100 : len === 4 ? 0x10000 : 0x100000000
}

/**
 * End offset of the one CBOR item at `pos`, or SCAN_MALFORMED (truncated,
 * indefinite length, reserved info, non-minimal argument), SCAN_TOO_DEEP or
 * SCAN_TOO_MANY_ITEMS. Never allocates beyond a `maxDepth`-sized stack.
 */
const scanStack: number[] = []

export function scanItem(buf: Uint8Array, pos: number, limits: CborLimits): number {
  const len = buf.length
  const { maxDepth, maxItems } = limits
  // remaining[d] = items still to read in the container at depth d + 1 (one array reused: scanItem never re-enters)
  const remaining = scanStack
  let depth = 0
  let items = 0
  for (;;) {
    const b = buf[pos]
    if (b === undefined) return SCAN_MALFORMED
    if (++items > maxItems) return SCAN_TOO_MANY_ITEMS
    const major = b >> 5
    const info = b & 0x1f
    let arg = info
    let next = pos + 1
    if (info >= 24) {
      const n = argumentBytes(info)
      if (n === 0 || next + n > len) return SCAN_MALFORMED
      arg = readArgument(buf, next, n)
      if (major !== 7 && arg < minimumFor(n)) return SCAN_MALFORMED
      next += n
    }
    if (major === 2 || major === 3) {
      pos = next + arg
      if (pos > len) return SCAN_MALFORMED
    } else if (major >= 4 && major <= 6) {
      if (depth + 1 > maxDepth) return SCAN_TOO_DEEP
      const children = major === 4 ? arg : major === 5 ? arg * 2 : 1
      pos = next
      if (children > 0) {
        // Each child takes at least one byte and one item: refuse early, before walking them.
        if (children > len - pos) return SCAN_MALFORMED
        if (items + children > maxItems) return SCAN_TOO_MANY_ITEMS
        remaining[depth++] = children
        continue
      }
    } else {
      // 0/1 integers and 7 simple values/floats: the head is the whole item.
      pos = next
    }
    // An item is complete: close every container it completes.
    while (depth > 0 && --(remaining[depth - 1] as number) === 0) depth--
    if (depth === 0) return pos
  }
}

/** End offset of the item at `pos` within limits; throws CborLimitError, or Error for malformed input. */
export function checkItem(buf: Uint8Array, pos: number, limits: CborLimits, what: string): number {
  const end = scanItem(buf, pos, limits)
  if (end >= 0) return end
  if (end === SCAN_TOO_DEEP) throw new CborLimitError('too-deep', `${what} nests deeper than ${limits.maxDepth}`)
  if (end === SCAN_TOO_MANY_ITEMS) throw new CborLimitError('too-many-items', `${what} has more than ${limits.maxItems} items`)
  throw new Error(`${what} is not well-formed CBOR`)
}

/**
 * `decodeFirst` of the item at the start of `buf`, after checking it is
 * within `limits`. Throws CborLimitError over a limit; any other error means
 * invalid CBOR.
 */
export function decodeFirstBounded(buf: Uint8Array, limits: CborLimits, what = 'CBOR item'): [unknown, Uint8Array] {
  checkItem(buf, 0, limits, what)
  return decodeFirst(buf)
}

/** `decode` within limits: exactly one item, no trailing bytes. */
export function decodeBounded(buf: Uint8Array, limits: CborLimits, what = 'CBOR item'): unknown {
  const end = checkItem(buf, 0, limits, what)
  if (end !== buf.length) throw new Error(`${what} is followed by ${buf.length - end} trailing bytes`)
  return decodeFirst(buf)[0]
}

/** Canonical key order: shorter first, then bytewise (the key at `start` must follow the one at `prevStart`). */
export function keyAfter(buf: Uint8Array, prevStart: number, prevLength: number, start: number, length: number): boolean {
  if (length !== prevLength) return length > prevLength
  for (let i = 0; i < length; i++) {
    const d = (buf[start + i] as number) - (buf[prevStart + i] as number)
    if (d !== 0) return d > 0
  }
  return false
}

// ignoreBOM: a leading U+FEFF is kept, as @atcute/cbor's full decode keeps it, so every reader sees the same text.
const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true })

/**
 * Walks the entries of the map at the start of `buf`, checking string keys in
 * canonical order and framing each value within `limits` (nested items are
 * only framed, not checked). `visit` gets each key's and value's byte range
 * and returns false to stop early. False if `buf` is not such a map up to
 * where the walk stopped.
 */
export function walkCanonicalMap(
  buf: Uint8Array,
  limits: CborLimits,
  visit: (keyStart: number, keyLength: number, valueStart: number, valueEnd: number) => boolean,
): boolean {
  if (readHeadAt(buf, 0) !== 5) return false
  const entries = lastHead.arg
  let pos = lastHead.next
  let prevStart = 0
  let prevLength = -1
  for (let i = 0; i < entries; i++) {
    // lastHead is read before `visit`, which may read heads of its own.
    if (readHeadAt(buf, pos) !== 3) return false
    const keyStart = lastHead.next
    const keyLength = lastHead.arg
    const keyEnd = keyStart + keyLength
    if (keyEnd > buf.length || !keyAfter(buf, prevStart, prevLength, keyStart, keyLength)) return false
    prevStart = keyStart
    prevLength = keyLength
    const valueEnd = scanItem(buf, keyEnd, limits)
    if (valueEnd < 0) return false
    if (!visit(keyStart, keyLength, keyEnd, valueEnd)) return true
    pos = valueEnd
  }
  return true
}

/**
 * The top-level scalar fields (integers, strings, booleans, null) of a map
 * that `checkItem` already accepted, without decoding anything nested: for
 * bodies the relay only logs or drops. Null if `buf` is not a map with
 * string keys in canonical order (nested items are only framed, not checked).
 */
export function shallowScalars(buf: Uint8Array, limits: CborLimits): Record<string, unknown> | null {
  const out: Record<string, unknown> = {}
  let badKey = false
  const ok = walkCanonicalMap(buf, limits, (keyStart, keyLength, valueStart) => {
    const value = scalarAt(buf, valueStart)
    if (value === undefined) return true
    let name: string
    try {
      name = utf8.decode(buf.subarray(keyStart, keyStart + keyLength))
    } catch {
      badKey = true
      return false
    }
    // Own data property, never the prototype (a `__proto__` key).
    Object.defineProperty(out, name, { value, enumerable: true, configurable: true, writable: true })
    return true
  })
  return ok && !badKey ? out : null
}

/** The scalar item at `pos` (integer, valid UTF-8 text, boolean, null); undefined for anything else. */
export function scalarAt(buf: Uint8Array, pos: number): unknown {
  const major = readHeadAt(buf, pos)
  const head = lastHead
  switch (major) {
    case 0:
      return Number.isSafeInteger(head.arg) ? head.arg : undefined
    case 1:
      return Number.isSafeInteger(head.arg) ? -1 - head.arg : undefined
    case 3:
      try {
        return utf8.decode(buf.subarray(head.next, head.next + head.arg))
      } catch {
        return undefined
      }
    case 7:
      return head.info === 20 ? false : head.info === 21 ? true : head.info === 22 ? null : undefined
    default:
      return undefined
  }
}
