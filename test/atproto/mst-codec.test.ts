import { describe, expect, it } from 'vitest'
import fc from 'fast-check'
import { CidLinkWrapper, decode, encode, fromBytes, toBytes, type Bytes } from '@atcute/cbor'
import { layoutFind, scanNode } from '../../src/atproto/mst/node-codec.js'
import {
  buildMst,
  compareKeys,
  decodeNode,
  encodeNode,
  EMPTY_NODE_BYTES,
  MAX_NODE_ENTRIES,
  MstError,
} from '../../src/atproto/mst/index.js'
import { exampleKeys, mstErrorReason, valueCid } from './mst-util.js'

const utf8 = new TextEncoder()

interface GenericEntry {
  k: Bytes
  p: number
  t: CidLinkWrapper | null
  v: CidLinkWrapper
}

/** The node as a generic DRISL value, built from our decoded form (prefix compression recomputed). */
function toGeneric(keys: Uint8Array[], vals: Uint8Array[], kids: (Uint8Array | null)[]): unknown {
  let prev: Uint8Array = new Uint8Array(0)
  const e: GenericEntry[] = keys.map((key, i) => {
    let p = 0
    while (p < prev.length && p < key.length && prev[p] === key[p]) p++
    prev = key
    const t = kids[i + 1] ?? null
    return { k: toBytes(key.slice(p)), p, t: t ? new CidLinkWrapper(t) : null, v: new CidLinkWrapper(vals[i]!) }
  })
  const l = kids[0] ?? null
  return { e, l: l ? new CidLinkWrapper(l) : null }
}

function sampleBlocks(): Uint8Array[] {
  const entries: [string, Uint8Array][] = exampleKeys.map((k, i) => [k, valueCid(i)])
  const { blocks } = buildMst(entries)
  return [...blocks.entries()].map(([, bytes]) => bytes)
}

function badNode(value: unknown): string {
  return mstErrorReason(() => decodeNode(encode(value)))
}

const link = (n: number) => new CidLinkWrapper(valueCid(n))

describe('MST node codec', () => {
  it('decodes the empty node', () => {
    const node = decodeNode(EMPTY_NODE_BYTES)
    expect(node.keys).toEqual([])
    expect(node.kids).toEqual([null])
    expect(encodeNode([], [], [null])).toEqual(EMPTY_NODE_BYTES)
  })

  it('agrees with @atcute/cbor in both directions on real nodes', () => {
    const blocks = sampleBlocks()
    expect(blocks.length).toBeGreaterThan(20)
    let withSubtree = 0
    for (const bytes of blocks) {
      const node = decodeNode(bytes)
      const generic = toGeneric(node.keys, node.vals, node.kids)
      // our encoder == generic canonical encoder == the stored bytes
      expect(Buffer.from(encode(generic)).equals(Buffer.from(bytes))).toBe(true)
      expect(Buffer.from(encodeNode(node.keys, node.vals, node.kids)).equals(Buffer.from(bytes))).toBe(true)
      // and the generic decoder sees the same structure
      const parsed = decode(bytes) as { e: GenericEntry[]; l: CidLinkWrapper | null }
      expect(parsed.e.length).toBe(node.keys.length)
      expect(parsed.l?.bytes ?? null).toEqual(node.kids[0])
      parsed.e.forEach((entry, i) => {
        expect(entry.v.bytes).toEqual(node.vals[i])
        expect(entry.t?.bytes ?? null).toEqual(node.kids[i + 1])
        if (entry.t) withSubtree++
      })
    }
    expect(withSubtree).toBeGreaterThan(0)
  })

  it('rejects every truncation of a valid node with bad-mst', () => {
    for (const bytes of sampleBlocks().slice(0, 8)) {
      for (let len = 0; len < bytes.length; len++) {
        expect(mstErrorReason(() => decodeNode(bytes.subarray(0, len)))).toBe('bad-mst')
      }
    }
  })

  it('either rejects a corrupted node with bad-mst or accepts exactly its canonical bytes', () => {
    const blocks = sampleBlocks()
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: blocks.length - 1 }),
        fc.nat(),
        fc.integer({ min: 0, max: 255 }),
        (which, where, byte) => {
          const bytes = blocks[which]!.slice()
          bytes[where % bytes.length] = byte
          let node
          try {
            node = decodeNode(bytes)
          } catch (err) {
            expect(err).toBeInstanceOf(MstError)
            expect((err as MstError).reason).toBe('bad-mst')
            return
          }
          expect(Buffer.from(encodeNode(node.keys, node.vals, node.kids)).equals(Buffer.from(bytes))).toBe(true)
        },
      ),
      { numRuns: 2000 },
    )
  })

  it('rejects wrong shapes and non-canonical forms', () => {
    const k = (s: string) => toBytes(utf8.encode(s))
    const entry = (key: string, p: number, extra: Partial<GenericEntry> = {}) => ({ k: k(key), p, t: null, v: link(1), ...extra })
    // control: the canonical form of the same data is accepted
    expect(decodeNode(encode({ e: [entry('a/1', 0), entry('2', 2)], l: null })).keys.length).toBe(2)

    expect(badNode({ e: [entry('a/2', 0), entry('1', 2)], l: null })).toBe('bad-mst') // out of order
    expect(badNode({ e: [entry('a/1', 0), entry('/2', 1)], l: null })).toBe('bad-mst') // prefix not maximal
    expect(badNode({ e: [entry('a/1', 0), entry('', 3)], l: null })).toBe('bad-mst') // duplicate key
    expect(badNode({ e: [entry('a/1', 0), entry('x', 4)], l: null })).toBe('bad-mst') // prefix past previous key
    expect(badNode({ e: [entry('a/1', 1)], l: null })).toBe('bad-mst') // first entry with prefix
    expect(badNode({ e: [entry('', 0)], l: null })).toBe('bad-mst') // empty key
    expect(badNode({ e: [entry('a'.repeat(1025), 0)], l: null })).toBe('bad-mst') // key too long
    expect(badNode({ e: [] })).toBe('bad-mst') // l missing
    expect(badNode({ l: null })).toBe('bad-mst') // e missing
    expect(badNode({ e: [], l: null, x: 1 })).toBe('bad-mst') // extra field
    expect(badNode({ e: [{ k: k('a/1'), p: 0, v: link(1) }], l: null })).toBe('bad-mst') // t absent
    expect(badNode({ e: [{ k: k('a/1'), p: 0, t: null, v: null }], l: null })).toBe('bad-mst') // v null
    expect(badNode({ e: [{ k: 'a/1', p: 0, t: null, v: link(1) }], l: null })).toBe('bad-mst') // k as string
    expect(badNode({ e: [], l: toBytes(valueCid(1)) })).toBe('bad-mst') // l as bytes, not a link
    expect(badNode([[], null])).toBe('bad-mst') // array, not a map
    const rawCid = valueCid(2).slice()
    rawCid[1] = 0x55
    expect(badNode({ e: [], l: new CidLinkWrapper(rawCid) })).toBe('bad-mst') // node link with raw codec
    expect(badNode({ e: [entry('a/1', 0, { t: new CidLinkWrapper(rawCid) })], l: null })).toBe('bad-mst')
    // record values keep non-dag-cbor codecs as received
    expect(decodeNode(encode({ e: [entry('a/1', 0, { v: new CidLinkWrapper(rawCid) })], l: null })).vals[0]).toEqual(rawCid)

    const good = encode({ e: [entry('a/1', 0)], l: null })
    expect(mstErrorReason(() => decodeNode(Uint8Array.of(...good, 0x00)))).toBe('bad-mst') // trailing byte
    // non-canonical array length: 0x98 0x01 instead of 0x81
    const longLen = Uint8Array.of(0xa2, 0x61, 0x65, 0x98, 0x01, ...good.subarray(4))
    expect(mstErrorReason(() => decodeNode(longLen))).toBe('bad-mst')
    // map keys in the wrong order: {l, e}
    expect(mstErrorReason(() => decodeNode(Uint8Array.of(0xa2, 0x61, 0x6c, 0xf6, 0x61, 0x65, 0x80)))).toBe('bad-mst')
    // CID link missing its 0x00 prefix
    const v = valueCid(1)
    const noPrefix = Uint8Array.of(0xa2, 0x61, 0x65, 0x80, 0x61, 0x6c, 0xd8, 0x2a, 0x58, 0x24, ...v)
    expect(mstErrorReason(() => decodeNode(noPrefix))).toBe('bad-mst')
  })

  it('limits entries per node', () => {
    const many = (n: number) => ({
      e: Array.from({ length: n }, (_, i) => ({ k: toBytes(utf8.encode(`k/${String(i).padStart(4, '0')}`)), p: 0, t: null, v: link(1) })),
      l: null,
    })
    // Recompute maximal prefixes through our own decoder/encoder pair for the control.
    const control = many(MAX_NODE_ENTRIES)
    const okBytes = encode(toGenericFrom(control))
    expect(decodeNode(okBytes).keys.length).toBe(MAX_NODE_ENTRIES)
    expect(badNode(toGenericFrom(many(MAX_NODE_ENTRIES + 1)))).toBe('bad-mst')
  })
})

/** Re-apply maximal prefix compression to a node written with p = 0 everywhere. */
function toGenericFrom(node: { e: { k: Bytes; v: CidLinkWrapper }[]; l: null }): unknown {
  return toGeneric(
    node.e.map((x) => fromBytes(x.k)),
    node.e.map((x) => x.v.bytes),
    [null, ...node.e.map(() => null)],
  )
}

describe('finding a key in a scanned node', () => {
  it('agrees with a plain sorted search, including prefix-related keys', () => {
    // A tiny alphabet makes keys that are prefixes of each other common.
    const arbKey = fc.uint8Array({ minLength: 1, maxLength: 5 }).map((b) => b.map((x) => 0x61 + (x % 3)))
    fc.assert(
      fc.property(fc.uniqueArray(arbKey, { minLength: 0, maxLength: 20, comparator: (a, b) => compareKeys(a, b) === 0 }), fc.array(arbKey, { maxLength: 20 }), (keys, probes) => {
        const sorted = [...keys].sort(compareKeys)
        const bytes = encodeNode(sorted, sorted.map((_, i) => valueCid(i)), sorted.map(() => null).concat([null]))
        const layout = scanNode(bytes)
        for (const probe of [...probes, ...sorted]) {
          let i = 0
          while (i < sorted.length && compareKeys(sorted[i]!, probe) < 0) i++
          const found = i < sorted.length && compareKeys(sorted[i]!, probe) === 0
          expect(layoutFind(layout, probe)).toBe((i << 1) | (found ? 1 : 0))
        }
      }),
      { numRuns: 500 },
    )
  })
})
