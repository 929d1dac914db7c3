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

/** Offset of a node link's 32-byte digest, or -1 for null. */
function readLink(b: Uint8Array): number {
  need(b, 1)
  if (b[pos] === 0xf6) {
    pos++
    return -1
  }
  need(b, LINK_SIZE)
  for (let i = 0; i < 9; i++) if (b[pos + i] !== LINK_HEADER[i]) fail('node link is not a CIDv1 dag-cbor sha2-256')
  const at = pos + 9
  pos += LINK_SIZE
  return at
}

/**
 * Where each part of a node sits in its block, found by a strict scan without
 * copying anything out (views cost ~60 ns each, a node has a dozen).
 * Per entry i, `ent[i * ENT + …]`: suffix start, suffix length, prefix length
 * `p`, `t` digest offset (-1 if null), value CID start (after the 0x00), value
 * CID length. `left` is the `l` digest offset (-1 if null).
 */
export interface NodeLayout {
  block: Uint8Array
  count: number
  ent: number[]
  left: number
}
export const ENT = 6

// The full key of the entry being scanned, to check order and prefix compression.
let keyScratch = new Uint8Array(MAX_KEY_BYTES)

/**
 * Strictly parse one node block. Checks the exact canonical layout, key order,
 * maximal prefix compression, key sizes and the entry-count limit.
 */
export function scanNode(block: Uint8Array): NodeLayout {
  const b = block
  pos = 0
  need(b, 3)
  if (b[0] !== 0xa2 || b[1] !== 0x61 || b[2] !== 0x65) fail('expected {e, l}')
  pos = 3
  const n = readArg(b, 4)
  if (n > MAX_NODE_ENTRIES) fail(`more than ${MAX_NODE_ENTRIES} entries`)
  const ent: number[] = []
  const key = keyScratch
  let prevLen = 0
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
    if (i === 0) {
      if (p !== 0) fail('first entry has a prefix')
      if (klen === 0) fail('empty key')
    } else {
      // The suffix must start where the previous key differs (maximal compression)
      // and sort after it, so the full keys strictly increase.
      if (p > prevLen) fail('prefix longer than previous key')
      if (klen === 0) fail('keys not strictly increasing')
      if (p < prevLen) {
        const d = b[kStart]! - key[p]!
        if (d === 0) fail('prefix compression not maximal')
        if (d < 0) fail('keys out of order')
      }
    }
    prevLen = p + klen
    if (prevLen > MAX_KEY_BYTES) fail('key too long')
    for (let j = 0; j < klen; j++) key[p + j] = b[kStart + j]!
    expect2(b, 0x61, 0x74, 't')
    const t = readLink(b)
    expect2(b, 0x61, 0x76, 'v')
    expect2(b, 0xd8, 0x2a, 'CID tag')
    const vlen = readArg(b, 2)
    if (vlen < 2 || vlen > MAX_VALUE_CID_BYTES + 1) fail('bad value CID length')
    need(b, vlen)
    if (b[pos] !== 0x00) fail('CID link without 0x00 prefix')
    ent.push(kStart, klen, p, t, pos + 1, vlen - 1)
    pos += vlen
  }
  expect2(b, 0x61, 0x6c, 'l')
  const left = readLink(b)
  if (pos !== b.length) fail('trailing bytes')
  return { block: b, count: n, ent, left }
}

/**
 * Position of `key` among a scanned node's keys without building them:
 * `(index << 1) | found`, where index is the first entry whose key is >= `key`.
 * Walks the entries keeping the common prefix length of `key` with the
 * previous entry, so each key byte is compared at most once or twice.
 */
export function layoutFind(layout: NodeLayout, key: Uint8Array): number {
  const { block: b, count: n, ent } = layout
  const klen = key.length
  let m = 0 // common prefix of `key` and the previous entry, which sorts before `key`
  for (let i = 0; i < n; i++) {
    const o = i * ENT
    const p = ent[o + 2]!
    if (i > 0) {
      // Entry = prev[0..p] + suffix. If p > m it agrees with prev at byte m,
      // so it is still below `key`; if p < m its byte p exceeds prev[p] = key[p].
      if (p > m) continue
      if (p < m) return i << 1
    }
    const s = ent[o]!
    const sl = ent[o + 1]!
    let j = 0
    while (j < sl && m + j < klen && b[s + j] === key[m + j]) j++
    if (j === sl) {
      if (m + j === klen) return (i << 1) | 1
      m += j // entry is a proper prefix of `key`: below it
      continue
    }
    if (m + j === klen || b[s + j]! > key[m + j]!) return i << 1
    m += j
  }
  return n << 1
}

/** Full keys of a scanned node (fresh arrays; p = 0 keys are views). */
export function layoutKeys(layout: NodeLayout): Uint8Array[] {
  const { block: b, count: n, ent } = layout
  const keys = new Array<Uint8Array>(n)
  let prev: Uint8Array | null = null
  for (let i = 0; i < n; i++) {
    const o = i * ENT
    const s = ent[o]!
    const sl = ent[o + 1]!
    const p = ent[o + 2]!
    let key: Uint8Array
    if (p === 0 || prev === null) {
      key = b.subarray(s, s + sl)
    } else {
      // Byte loops beat TypedArray#set/subarray at these sizes (keys are ~30 bytes).
      key = new Uint8Array(p + sl)
      for (let j = 0; j < p; j++) key[j] = prev[j]!
      for (let j = 0; j < sl; j++) key[p + j] = b[s + j]!
    }
    keys[i] = key
    prev = key
  }
  return keys
}

/** Value CID of entry i (a view into the block). */
export function layoutValue(layout: NodeLayout, i: number): Uint8Array {
  const o = i * ENT
  const start = layout.ent[o + 4]!
  return layout.block.subarray(start, start + layout.ent[o + 5]!)
}

/** Digest offset of child link i (0 = `l`, i + 1 = entry i's `t`), or -1. */
export function layoutKidDigest(layout: NodeLayout, i: number): number {
  return i === 0 ? layout.left : layout.ent[(i - 1) * ENT + 3]!
}

/** Child link i as a 36-byte CID view, or null. */
export function layoutKid(layout: NodeLayout, i: number): Uint8Array | null {
  const at = layoutKidDigest(layout, i)
  return at < 0 ? null : layout.block.subarray(at - 4, at + 32)
}

/**
 * Strictly decode one node block (see scanNode). Returned keys/CIDs may be
 * views into `block`.
 */
export function decodeNode(block: Uint8Array): NodeData {
  const layout = scanNode(block)
  const n = layout.count
  const vals = new Array<Uint8Array>(n)
  const kids = new Array<Uint8Array | null>(n + 1)
  for (let i = 0; i < n; i++) vals[i] = layoutValue(layout, i)
  for (let i = 0; i <= n; i++) kids[i] = layoutKid(layout, i)
  return { keys: layoutKeys(layout), vals, kids }
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
