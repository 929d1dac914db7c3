/**
 * Byte-exact codec for MST nodes. A node has exactly one valid DRISL encoding:
 *   {e: [{k: bytes, p: uint, t: link|null, v: link}, ...], l: link|null}
 * with map keys in canonical order and all keys always present. So instead of
 * a generic CBOR decode (object + wrapper per field) we match that layout byte
 * by byte; anything else, including every non-canonical encoding, is rejected.
 * Tests cross-check both directions against @atcute/cbor.
 */
import { MstError } from './errors.js'

/** Defence against key mining: honest nodes have ~4 entries; >512 is ~(3/4)^512 unlikely. */
export const MAX_NODE_ENTRIES = 512
export const MAX_KEY_BYTES = 1024
/** Record CIDs (`v`) are kept exactly as received, within the data model's CID size limit. */
const MAX_VALUE_CID_BYTES = 100

/** A decoded node. `kids[0]` is `l`; `kids[i + 1]` is entry i's `t`. */
export interface NodeData {
  keys: Uint8Array[]
  /** Record CIDs: views into the block. */
  vals: Uint8Array[]
  /** Child node CIDs (36 bytes, views into the block) or null. */
  kids: (Uint8Array | null)[]
}

// Node links must be CIDv1 dag-cbor sha2-256: tag 42, bytes(37), 0x00 prefix, 01 71 12 20.
const LINK_HEADER = [0xd8, 0x2a, 0x58, 0x25, 0x00, 0x01, 0x71, 0x12, 0x20] as const
const LINK_SIZE = 41 // header (9) + digest (32)

let pos = 0

function fail(why: string): never {
  throw new MstError('bad-mst', `malformed MST node: ${why}`)
}

function need(b: Uint8Array, n: number): void {
  if (pos + n > b.length) fail('truncated')
}

function expect2(b: Uint8Array, x: number, y: number, what: string): void {
  need(b, 2)
  if (b[pos] !== x || b[pos + 1] !== y) fail(`expected ${what}`)
  pos += 2
}

/** A CBOR head of major type `major` with a canonical (shortest) argument below 2^32. */
function readArg(b: Uint8Array, major: number): number {
  need(b, 1)
  const head = b[pos++]!
  if (head >> 5 !== major) fail(`expected CBOR major type ${major}`)
  const info = head & 31
  if (info < 24) return info
  if (info === 24) {
    need(b, 1)
    const v = b[pos++]!
    if (v < 24) fail('non-canonical integer')
    return v
  }
  if (info === 25) {
    need(b, 2)
    const v = (b[pos]! << 8) | b[pos + 1]!
    pos += 2
    if (v < 0x100) fail('non-canonical integer')
    return v
  }
  if (info === 26) {
    need(b, 4)
    const v = ((b[pos]! << 24) | (b[pos + 1]! << 16) | (b[pos + 2]! << 8) | b[pos + 3]!) >>> 0
    pos += 4
    if (v < 0x10000) fail('non-canonical integer')
    return v
  }
  fail('length or integer out of range')
}

function readLink(b: Uint8Array): Uint8Array | null {
  need(b, 1)
  if (b[pos] === 0xf6) {
    pos++
    return null
  }
  need(b, LINK_SIZE)
  for (let i = 0; i < 9; i++) if (b[pos + i] !== LINK_HEADER[i]) fail('node link is not a CIDv1 dag-cbor sha2-256')
  const cid = b.subarray(pos + 5, pos + LINK_SIZE)
  pos += LINK_SIZE
  return cid
}

function readValue(b: Uint8Array): Uint8Array {
  expect2(b, 0xd8, 0x2a, 'CID tag')
  const len = readArg(b, 2)
  if (len < 2 || len > MAX_VALUE_CID_BYTES + 1) fail('bad value CID length')
  need(b, len)
  if (b[pos] !== 0x00) fail('CID link without 0x00 prefix')
  const cid = b.subarray(pos + 1, pos + len)
  pos += len
  return cid
}

/**
 * Strictly decode one node block. Checks the exact canonical layout, key order,
 * maximal prefix compression, key sizes and the entry-count limit. Returned
 * keys/CIDs may be views into `block`.
 */
export function decodeNode(block: Uint8Array): NodeData {
  const b = block
  pos = 0
  need(b, 3)
  if (b[0] !== 0xa2 || b[1] !== 0x61 || b[2] !== 0x65) fail('expected {e, l}')
  pos = 3
  const n = readArg(b, 4)
  if (n > MAX_NODE_ENTRIES) fail(`more than ${MAX_NODE_ENTRIES} entries`)
  const keys = new Array<Uint8Array>(n)
  const vals = new Array<Uint8Array>(n)
  const kids = new Array<Uint8Array | null>(n + 1)
  let prev: Uint8Array | null = null
  for (let i = 0; i < n; i++) {
    need(b, 3)
    if (b[pos] !== 0xa4 || b[pos + 1] !== 0x61 || b[pos + 2] !== 0x6b) fail('expected entry {k, p, t, v}')
    pos += 3
    const klen = readArg(b, 2)
    need(b, klen)
    const kStart = pos
    pos += klen
    expect2(b, 0x61, 0x70, 'p')
    const p = readArg(b, 0)
    let key: Uint8Array
    if (prev === null) {
      if (p !== 0) fail('first entry has a prefix')
      if (klen === 0) fail('empty key')
      key = b.subarray(kStart, kStart + klen)
    } else {
      // The suffix must start where the previous key differs (maximal compression)
      // and sort after it, so the full keys strictly increase.
      if (p > prev.length) fail('prefix longer than previous key')
      if (klen === 0) fail('keys not strictly increasing')
      if (p < prev.length) {
        const d = b[kStart]! - prev[p]!
        if (d === 0) fail('prefix compression not maximal')
        if (d < 0) fail('keys out of order')
      }
      if (p === 0) {
        key = b.subarray(kStart, kStart + klen)
      } else {
        // Byte loops beat TypedArray#set/subarray at these sizes (keys are ~30 bytes).
        key = new Uint8Array(p + klen)
        for (let j = 0; j < p; j++) key[j] = prev[j]!
        for (let j = 0; j < klen; j++) key[p + j] = b[kStart + j]!
      }
    }
    if (key.length > MAX_KEY_BYTES) fail('key too long')
    keys[i] = key
    prev = key
    expect2(b, 0x61, 0x74, 't')
    kids[i + 1] = readLink(b)
    expect2(b, 0x61, 0x76, 'v')
    vals[i] = readValue(b)
  }
  expect2(b, 0x61, 0x6c, 'l')
  kids[0] = readLink(b)
  if (pos !== b.length) fail('trailing bytes')
  return { keys, vals, kids }
}

function headSize(arg: number): number {
  return arg < 24 ? 1 : arg < 0x100 ? 2 : arg < 0x10000 ? 3 : 5
}

function writeHead(out: Uint8Array, at: number, major: number, arg: number): number {
  const m = major << 5
  if (arg < 24) {
    out[at] = m | arg
    return at + 1
  }
  if (arg < 0x100) {
    out[at] = m | 24
    out[at + 1] = arg
    return at + 2
  }
  if (arg < 0x10000) {
    out[at] = m | 25
    out[at + 1] = arg >>> 8
    out[at + 2] = arg & 0xff
    return at + 3
  }
  out[at] = m | 26
  out[at + 1] = arg >>> 24
  out[at + 2] = (arg >>> 16) & 0xff
  out[at + 3] = (arg >>> 8) & 0xff
  out[at + 4] = arg & 0xff
  return at + 5
}

function writeLink(out: Uint8Array, at: number, cid: Uint8Array | null): number {
  if (cid === null) {
    out[at] = 0xf6
    return at + 1
  }
  if (cid.length !== 36) throw new MstError('bad-mst', 'node link must be a 36-byte CID')
  out[at] = 0xd8
  out[at + 1] = 0x2a
  out[at + 2] = 0x58
  out[at + 3] = 0x25
  out[at + 4] = 0x00
  for (let i = 0; i < 36; i++) out[at + 5 + i] = cid[i]!
  return at + LINK_SIZE
}

const prefixScratch: number[] = []
let encodeScratch = new Uint8Array(16 * 1024)

/**
 * Canonical encoding of a node (fresh buffer). `kids` has one more element than
 * `keys`; keys must be sorted and distinct (not re-checked here).
 */
export function encodeNode(
  keys: readonly Uint8Array[],
  vals: readonly Uint8Array[],
  kids: readonly (Uint8Array | null)[],
): Uint8Array {
  return encodeNodeScratch(keys, vals, kids).slice()
}

/**
 * Like encodeNode, but into shared scratch space, valid only until the next
 * call: for hashing a node without allocating a buffer for it (blocks over 64
 * bytes live off the V8 heap and cost more to allocate than to fill).
 */
export function encodeNodeScratch(
  keys: readonly Uint8Array[],
  vals: readonly Uint8Array[],
  kids: readonly (Uint8Array | null)[],
): Uint8Array {
  const n = keys.length
  const ps = prefixScratch
  let size = 3 + headSize(n) + 2 + (kids[0] ? LINK_SIZE : 1)
  let prev: Uint8Array | null = null
  for (let i = 0; i < n; i++) {
    const key = keys[i]!
    let p = 0
    if (prev !== null) {
      const max = prev.length < key.length ? prev.length : key.length
      while (p < max && prev[p] === key[p]) p++
    }
    ps[i] = p
    const klen = key.length - p
    const vlen = vals[i]!.length + 1
    // a4 "k" bytes "p" uint "t" link "v" tag42 bytes(0x00 cid)
    size += 3 + headSize(klen) + klen + 2 + headSize(p) + 2 + (kids[i + 1] ? LINK_SIZE : 1) + 4 + headSize(vlen) + vlen
    prev = key
  }
  if (encodeScratch.length < size) encodeScratch = new Uint8Array(Math.max(size, encodeScratch.length * 2))
  const out = encodeScratch
  out[0] = 0xa2
  out[1] = 0x61
  out[2] = 0x65
  let at = writeHead(out, 3, 4, n)
  for (let i = 0; i < n; i++) {
    const key = keys[i]!
    const p = ps[i]!
    out[at] = 0xa4
    out[at + 1] = 0x61
    out[at + 2] = 0x6b
    at = writeHead(out, at + 3, 2, key.length - p)
    for (let j = p; j < key.length; j++) out[at++] = key[j]!
    out[at] = 0x61
    out[at + 1] = 0x70
    at = writeHead(out, at + 2, 0, p)
    out[at] = 0x61
    out[at + 1] = 0x74
    at = writeLink(out, at + 2, kids[i + 1] ?? null)
    const val = vals[i]!
    out[at] = 0x61
    out[at + 1] = 0x76
    out[at + 2] = 0xd8
    out[at + 3] = 0x2a
    at = writeHead(out, at + 4, 2, val.length + 1)
    out[at++] = 0x00
    for (let j = 0; j < val.length; j++) out[at++] = val[j]!
  }
  out[at] = 0x61
  out[at + 1] = 0x6c
  at = writeLink(out, at + 2, kids[0] ?? null)
  if (at !== size) throw new Error(`encodeNode size mismatch: ${at} != ${size}`)
  return out.subarray(0, size)
}

/** The canonical empty node `{e: [], l: null}` (the empty repo's data root). */
export const EMPTY_NODE_BYTES: Uint8Array = Uint8Array.of(0xa2, 0x61, 0x65, 0x80, 0x61, 0x6c, 0xf6)
