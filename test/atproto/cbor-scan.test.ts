import { CidLinkWrapper, decodeFirst, encode, toBytes, toCidLink } from '@atcute/cbor'
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { readCarSlice } from '../../src/atproto/car.js'
import {
  CborLimitError,
  SCAN_MALFORMED,
  SCAN_TOO_DEEP,
  SCAN_TOO_MANY_ITEMS,
  decodeBounded,
  decodeFirstBounded,
  scanItem,
  shallowScalars,
  type CborLimits,
} from '../../src/atproto/cbor-scan.js'
import { decodeCommit } from '../../src/atproto/commit.js'
import { FrameError, decodeFrame, encodeMessageFrame } from '../../src/atproto/frame.js'
import { FRAME_BODY_LIMITS, SKIPPED_BODY_LIMITS } from '../../src/atproto/limits.js'
import { commitBombFrame, infoBombFrame, nestedArrayBomb } from '../helpers/hostile-frames.js'

const WIDE: CborLimits = { maxDepth: 10_000, maxItems: 10_000_000 }

function concat(...parts: Uint8Array[]): Uint8Array {
  return new Uint8Array(Buffer.concat(parts))
}

function limitError(fn: () => unknown): CborLimitError {
  try {
    fn()
  } catch (err) {
    if (err instanceof CborLimitError) return err
    throw err
  }
  throw new Error('expected a CborLimitError')
}

function frameReason(bytes: Uint8Array): string {
  try {
    decodeFrame(bytes)
  } catch (err) {
    if (err instanceof FrameError) return err.reason
    throw err
  }
  return 'accepted'
}

/** Nesting and item count of a decoded value, counted as scanItem counts them (CID link = tag + bytes). */
function measure(value: unknown): { depth: number; items: number } {
  if (Array.isArray(value)) {
    let depth = 0
    let items = 1
    for (const v of value) {
      const m = measure(v)
      depth = Math.max(depth, m.depth)
      items += m.items
    }
    return { depth: depth + 1, items }
  }
  if (value !== null && typeof value === 'object' && Object.getPrototypeOf(value) === Object.prototype) {
    let depth = 0
    let items = 1
    for (const v of Object.values(value)) {
      const m = measure(v)
      depth = Math.max(depth, m.depth)
      items += 1 + m.items
    }
    return { depth: depth + 1, items }
  }
  if (value instanceof CidLinkWrapper) return { depth: 1, items: 2 }
  return { depth: 0, items: 1 }
}

/** DAG-CBOR data-model values (ints, strings, bytes, CID links, null/bools, arrays, maps). */
const dataValue = fc.letrec((tie) => ({
  leaf: fc.oneof(
    fc.integer({ min: -(2 ** 40), max: 2 ** 40 }),
    fc.maxSafeInteger(),
    fc.string(),
    fc.uint8Array({ maxLength: 40 }).map((b) => toBytes(b)),
    fc.uint8Array({ minLength: 32, maxLength: 32 }).map((d) => toCidLink({ bytes: concat(new Uint8Array([1, 0x71, 0x12, 0x20]), d) } as never)),
    fc.constantFrom(null, true, false),
  ),
  node: fc.oneof({ depthSize: 'small' }, tie('leaf'), fc.array(tie('node'), { maxLength: 5 }), fc.dictionary(fc.string({ maxLength: 6 }), tie('node'), { maxKeys: 5, noNullPrototype: true })),
})).node

describe('scanItem', () => {
  it('finds the end of each item and counts depth and items as documented', () => {
    const value = { a: [1, 'x', { b: null }], c: toBytes(new Uint8Array(300)) }
    const bytes = encode(value)
    expect(scanItem(concat(bytes, new Uint8Array([7])), 0, WIDE)).toBe(bytes.length)
    // depth: map → array → map = 3; items: map(1) + a,[..](2) + 1,'x',{}(3) + b,null(2) + c,bytes(2) = 10
    expect(scanItem(bytes, 0, { maxDepth: 3, maxItems: 10 })).toBe(bytes.length)
    expect(scanItem(bytes, 0, { maxDepth: 2, maxItems: 10 })).toBe(SCAN_TOO_DEEP)
    expect(scanItem(bytes, 0, { maxDepth: 3, maxItems: 9 })).toBe(SCAN_TOO_MANY_ITEMS)
  })

  it('refuses a 4.9-million-deep array at the depth limit, without recursion', () => {
    const bomb = nestedArrayBomb(4_900_000)
    expect(scanItem(bomb, 0, SKIPPED_BODY_LIMITS)).toBe(SCAN_TOO_DEEP)
    expect(scanItem(bomb, 0, { maxDepth: 5_000_000, maxItems: 5_000_000 })).toBe(bomb.length)
    expect(limitError(() => decodeBounded(bomb, FRAME_BODY_LIMITS)).reason).toBe('too-deep')
  })

  it('refuses too many items before walking them (a declared length is checked first)', () => {
    const flat = encode(Array.from({ length: 20_000 }, (_, i) => i % 23))
    expect(scanItem(flat, 0, FRAME_BODY_LIMITS)).toBe(SCAN_TOO_MANY_ITEMS)
    expect(limitError(() => decodeFirstBounded(flat, FRAME_BODY_LIMITS)).reason).toBe('too-many-items')
    // Many small containers: each is cheap, the total is not.
    const wide = encode(Array.from({ length: 3_000 }, () => [0, 0]))
    expect(scanItem(wide, 0, FRAME_BODY_LIMITS)).toBe(SCAN_TOO_MANY_ITEMS)
  })

  it('reports truncated, indefinite and non-minimal input as malformed', () => {
    const bytes = encode({ a: [1, 2, 3], b: 'hello' })
    for (let cut = 0; cut < bytes.length; cut++) expect(scanItem(bytes.subarray(0, cut), 0, WIDE)).toBe(SCAN_MALFORMED)
    expect(scanItem(new Uint8Array([0x9f, 0x01, 0xff]), 0, WIDE)).toBe(SCAN_MALFORMED) // indefinite array
    expect(scanItem(new Uint8Array([0x18, 0x01]), 0, WIDE)).toBe(SCAN_MALFORMED) // 1 in two bytes
    expect(scanItem(new Uint8Array([0x9a, 0xff, 0xff, 0xff, 0xff]), 0, WIDE)).toBe(SCAN_MALFORMED) // 4 G items claimed
    expect(scanItem(new Uint8Array([0x5a, 0x00, 0x01, 0x00, 0x00]), 0, WIDE)).toBe(SCAN_MALFORMED) // bytes past the end
  })

  it('decodeBounded refuses trailing bytes', () => {
    expect(() => decodeBounded(concat(encode({ a: 1 }), new Uint8Array([0])), WIDE)).toThrow(/trailing/)
    expect(decodeBounded(encode({ a: 1 }), WIDE)).toEqual({ a: 1 })
  })

  it('property: agrees with decodeFirst on every data-model value within limits', () => {
    fc.assert(
      fc.property(dataValue, fc.integer({ min: 0, max: 6 }), fc.integer({ min: 1, max: 60 }), (value, maxDepth, maxItems) => {
        const bytes = encode(value)
        const { depth, items } = measure(value)
        const limits = { maxDepth, maxItems }
        if (depth <= maxDepth && items <= maxItems) {
          expect(decodeFirstBounded(bytes, limits)).toEqual(decodeFirst(bytes))
          expect(scanItem(bytes, 0, limits)).toBe(bytes.length)
        } else {
          const err = limitError(() => decodeFirstBounded(bytes, limits))
          // Over both: whichever the scan meets first.
          const over = [...(depth > maxDepth ? ['too-deep'] : []), ...(items > maxItems ? ['too-many-items'] : [])]
          expect(over).toContain(err.reason)
        }
      }),
      { numRuns: 2_000 },
    )
  })

  it('property: on arbitrary bytes, whatever decodeFirst accepts within wide limits the bounded decoder returns the same', () => {
    const bytesLike = fc.oneof(
      fc.uint8Array({ maxLength: 64 }),
      // Valid encodings with one byte changed or cut: close to the edge cases.
      fc.tuple(dataValue, fc.nat(), fc.nat({ max: 255 }), fc.boolean()).map(([v, at, b, cut]) => {
        const bytes = encode(v)
        const copy = bytes.slice()
        if (copy.length > 0) copy[at % copy.length] = b
        return cut ? copy.subarray(0, at % (copy.length + 1)) : copy
      }),
    )
    fc.assert(
      fc.property(bytesLike, (bytes) => {
        let plain: { ok: true; value: unknown } | { ok: false }
        try {
          plain = { ok: true, value: decodeFirst(bytes) }
        } catch {
          plain = { ok: false }
        }
        let bounded: { ok: true; value: unknown } | { ok: false }
        try {
          bounded = { ok: true, value: decodeFirstBounded(bytes, WIDE) }
        } catch (err) {
          expect(err).not.toBeInstanceOf(CborLimitError) // nothing this small is near the wide limits
          bounded = { ok: false }
        }
        expect(bounded).toEqual(plain)
      }),
      { numRuns: 5_000 },
    )
  })

  it('property: any nesting past the limit is refused as too-deep, never a stack overflow', () => {
    fc.assert(
      fc.property(fc.integer({ min: 33, max: 200_000 }), fc.constantFrom(0x81, 0xa1, 0xd8), (depth, kind) => {
        // arrays [[..]], maps {"": {"": ..}} or tag chains
        const unit = kind === 0x81 ? [0x81] : kind === 0xa1 ? [0xa1, 0x60] : [0xd8, 0x2a]
        const bytes = new Uint8Array(depth * unit.length + 1)
        for (let i = 0; i < depth; i++) bytes.set(unit, i * unit.length)
        expect(limitError(() => decodeFirstBounded(bytes, SKIPPED_BODY_LIMITS)).reason).toBe('too-deep')
      }),
      { numRuns: 50 },
    )
  })
})

describe('shallowScalars', () => {
  it('keeps top-level scalars only and skips nested values undecoded', () => {
    const bytes = encode({ seq: 7, name: 'OutdatedCursor', message: 'old', deep: [[1]], blob: toBytes(new Uint8Array(4)), ok: true, no: null })
    expect(shallowScalars(bytes, SKIPPED_BODY_LIMITS)).toEqual({ seq: 7, name: 'OutdatedCursor', message: 'old', ok: true, no: null })
  })

  it('is null for a non-map or keys out of canonical order, and keeps __proto__ an own field', () => {
    expect(shallowScalars(encode([1]), SKIPPED_BODY_LIMITS)).toBeNull()
    expect(shallowScalars(new Uint8Array([0xa2, 0x63, 0x73, 0x65, 0x71, 0x01, 0x63, 0x64, 0x69, 0x64, 0x61, 0x78]), SKIPPED_BODY_LIMITS)).toBeNull()
    const proto = shallowScalars(new Uint8Array([0xa1, 0x69, ...Buffer.from('__proto__'), 0x01]), SKIPPED_BODY_LIMITS)
    expect(Object.getPrototypeOf(proto)).toBe(Object.prototype)
    expect(Object.hasOwn(proto!, '__proto__')).toBe(true)
  })
})

describe('bounded decoding of host bytes', () => {
  it('decodeFrame refuses nesting bombs in any body, before decoding', () => {
    expect(frameReason(infoBombFrame())).toBe('too-deep')
    expect(frameReason(commitBombFrame(1))).toBe('too-deep')
    expect(frameReason(concat(encode({ t: '#somethingNew', op: 1 }), nestedArrayBomb(100)))).toBe('too-deep')
    // Depth 9 is over the decoded-body limit but fine for a skipped type.
    const nine = { x: [[[[[[[[1]]]]]]]] }
    expect(frameReason(encodeMessageFrame('#identity', nine))).toBe('too-deep')
    expect(frameReason(encodeMessageFrame('#somethingNew', nine))).toBe('accepted')
    expect(frameReason(encodeMessageFrame('#account', { many: Array.from({ length: 9_000 }, () => 0) }))).toBe('too-many-items')
    // A deep header is refused before the body is looked at.
    expect(frameReason(concat(encode({ t: '#info', op: 1, x: [[1]] }), encode({})))).toBe('too-deep')
  })

  it('#info bodies are not decoded: only their top-level strings are read', () => {
    const frame = decodeFrame(concat(encode({ t: '#info', op: 1 }), encode({ name: 'OutdatedCursor', message: 'm', extra: [[{ a: 1 }]] })))
    expect(frame).toMatchObject({ op: 1, t: '#info', body: { name: 'OutdatedCursor', message: 'm' } })
    expect(frame.op === 1 && 'extra' in frame.body).toBe(false)
  })

  it('a commit block or CAR header that is a nesting bomb is refused as too-deep', () => {
    expect(limitError(() => decodeCommit(nestedArrayBomb(999_000))).reason).toBe('too-deep')
    const header = nestedArrayBomb(100_000)
    const lengthPrefix = new Uint8Array([0x80 | (header.length & 0x7f), 0x80 | ((header.length >> 7) & 0x7f), header.length >> 14])
    expect(limitError(() => readCarSlice(concat(lengthPrefix, header))).reason).toBe('too-deep')
  })
})
