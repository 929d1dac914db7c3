import { readFileSync } from 'node:fs'
import { decode, decodeFirst, encode, toBytes } from '@atcute/cbor'
import { describe, expect, it } from 'vitest'
import {
  FrameError,
  MAX_FRAME_BYTES,
  binaryMessageBytes,
  decodeFrame,
  encodeErrorFrame,
  encodeInfoFrame,
  encodeMessageFrame,
  frameWithSeq,
  type MessageFrame,
} from '../../src/atproto/frame.js'

const scenario = readFileSync(new URL('../fixtures/pds-scenario/frames.jsonl', import.meta.url), 'utf8')
  .trim()
  .split('\n')
  .map((line) => JSON.parse(line) as { t: string; seq: number; b64: string })

function bytesOf(b64: string): Uint8Array {
  return new Uint8Array(Buffer.from(b64, 'base64'))
}

function concat(...parts: Uint8Array[]): Uint8Array {
  return new Uint8Array(Buffer.concat(parts))
}

function frameError(fn: () => unknown): FrameError {
  try {
    fn()
  } catch (err) {
    if (err instanceof FrameError) return err
    throw err
  }
  throw new Error('expected a FrameError')
}

describe('decodeFrame', () => {
  it('decodes every real PDS frame and re-encodes it byte for byte', () => {
    expect(scenario.length).toBe(29)
    for (const { t, seq, b64 } of scenario) {
      const bytes = bytesOf(b64)
      const frame = decodeFrame(bytes) as MessageFrame
      expect(frame.op).toBe(1)
      expect(frame.t).toBe(t)
      expect(frame.body.seq).toBe(seq)
      expect(Buffer.from(encode(frame.body)).equals(Buffer.from(frame.bodyBytes))).toBe(true)
      expect(Buffer.from(encodeMessageFrame(t, frame.body)).equals(Buffer.from(bytes))).toBe(true)
    }
  })

  it('reads error frames with t absent or empty', () => {
    const absent = encodeErrorFrame('FutureCursor', 'cursor in the future')
    expect(Buffer.from(absent.subarray(0, 5)).toString('hex')).toBe('a1626f7020')
    expect(decodeFrame(absent)).toEqual({ op: -1, error: 'FutureCursor', message: 'cursor in the future' })
    const empty = concat(encode({ t: '', op: -1 }), encode({ error: 'ConsumerTooSlow' }))
    expect(decodeFrame(empty)).toEqual({ op: -1, error: 'ConsumerTooSlow' })
  })

  it('writes the canonical #commit header', () => {
    const frame = encodeMessageFrame('#commit', { seq: 1 })
    expect(Buffer.from(frame.subarray(0, 15)).toString('hex')).toBe('a261746723636f6d6d6974626f7001')
  })

  it('writes #info frames', () => {
    const frame = decodeFrame(encodeInfoFrame('OutdatedCursor', 'too old')) as MessageFrame
    expect(frame.t).toBe('#info')
    expect(frame.body).toEqual({ name: 'OutdatedCursor', message: 'too old' })
  })

  it('rejects garbage, truncation, trailing bytes and bad shapes', () => {
    const good = bytesOf(scenario[2]!.b64)
    expect(frameError(() => decodeFrame(new Uint8Array([0xff, 0x00, 0x13]))).reason).toBe('bad-frame')
    expect(frameError(() => decodeFrame(new Uint8Array(0))).reason).toBe('bad-frame')
    expect(frameError(() => decodeFrame(good.subarray(0, good.length - 3))).reason).toBe('bad-frame')
    expect(frameError(() => decodeFrame(concat(good, new Uint8Array([0x00])))).reason).toBe('bad-frame')
    // header only
    expect(frameError(() => decodeFrame(encode({ t: '#commit', op: 1 }))).reason).toBe('bad-frame')
    // missing op, unknown op, missing t, non-map body, non-map header
    expect(frameError(() => decodeFrame(concat(encode({ t: '#commit' }), encode({})))).message).toMatch(/op/)
    expect(frameError(() => decodeFrame(concat(encode({ t: '#x', op: 2 }), encode({})))).reason).toBe('bad-frame')
    expect(frameError(() => decodeFrame(concat(encode({ op: 1 }), encode({})))).reason).toBe('bad-frame')
    expect(frameError(() => decodeFrame(concat(encode({ t: '#x', op: 1 }), encode([1, 2])))).reason).toBe('bad-frame')
    expect(frameError(() => decodeFrame(concat(encode({ t: '#x', op: 1 }), encode(toBytes(new Uint8Array(2)))))).reason).toBe(
      'bad-frame',
    )
    expect(frameError(() => decodeFrame(concat(encode([1]), encode({})))).reason).toBe('bad-frame')
    // error frame without an error name, or with a message type
    expect(frameError(() => decodeFrame(concat(encode({ op: -1 }), encode({ message: 'x' })))).reason).toBe('bad-frame')
    expect(frameError(() => decodeFrame(concat(encode({ t: '#commit', op: -1 }), encode({ error: 'X' })))).reason).toBe(
      'bad-frame',
    )
  })

  it('rejects map keys out of canonical order', () => {
    // {op: 1, t: "#x"} written with op before t (canonical puts t first)
    const header = new Uint8Array([0xa2, 0x62, 0x6f, 0x70, 0x01, 0x61, 0x74, 0x62, 0x23, 0x78])
    expect(frameError(() => decodeFrame(concat(header, encode({}))))).toBeInstanceOf(FrameError)
    // body {seq: 1, did: "x"} with seq before did
    const body = new Uint8Array([0xa2, 0x63, 0x73, 0x65, 0x71, 0x01, 0x63, 0x64, 0x69, 0x64, 0x61, 0x78])
    expect(frameError(() => decodeFrame(concat(encode({ t: '#x', op: 1 }), body))).reason).toBe('bad-frame')
    // non-minimal integer (op encoded as 0x18 0x01)
    const nonMinimal = new Uint8Array([0xa2, 0x61, 0x74, 0x62, 0x23, 0x78, 0x62, 0x6f, 0x70, 0x18, 0x01])
    expect(frameError(() => decodeFrame(concat(nonMinimal, encode({})))).reason).toBe('bad-frame')
  })

  it('rejects frames over the size limit as too-big', () => {
    const big = new Uint8Array(MAX_FRAME_BYTES + 1)
    expect(frameError(() => decodeFrame(big)).reason).toBe('too-big')
  })

  it('rejects text frames at the socket boundary', () => {
    expect(frameError(() => binaryMessageBytes(Buffer.from('hi'), false)).reason).toBe('bad-frame')
    const parts = [Buffer.from([1, 2]), Buffer.from([3])]
    expect(Array.from(binaryMessageBytes(parts, true))).toEqual([1, 2, 3])
    expect(Array.from(binaryMessageBytes(new Uint8Array([4]).buffer, true))).toEqual([4])
  })
})

describe("decodeFrame(bytes, 'shallow')", () => {
  it('reads every real #commit/#sync: the same scalars and lengths as a full decode, nothing nested', () => {
    let repoFrames = 0
    for (const { t, b64 } of scenario) {
      const full = decodeFrame(bytesOf(b64)) as MessageFrame
      const shallow = decodeFrame(bytesOf(b64), 'shallow') as MessageFrame
      if (t !== '#commit' && t !== '#sync') {
        expect(shallow).toEqual(full)
        continue
      }
      repoFrames++
      expect(shallow.sizes).toEqual(full.sizes)
      expect(shallow.sizes!.blocks).toBe((full.body.blocks as { buf: Uint8Array }).buf.length)
      if (t === '#commit') expect(shallow.sizes!.ops).toBe((full.body.ops as unknown[]).length)
      else expect(shallow.sizes!.ops).toBeUndefined()
      for (const key of ['repo', 'did', 'rev', 'seq', 'since', 'time']) expect(shallow.body[key]).toEqual(full.body[key])
      expect(shallow.body.blocks).toBeUndefined()
      expect(shallow.body.ops).toBeUndefined()
      expect(Buffer.from(shallow.bodyBytes)).toEqual(Buffer.from(full.bodyBytes))
    }
    expect(repoFrames).toBeGreaterThan(3)
  })

  it('reads non-ASCII text, and leaves out a known field that is not a scalar', () => {
    const body = { seq: 5, repo: 'did:plc:é∑', rev: { not: 'a string' }, blocks: toBytes(new Uint8Array(3)), ops: [1, 2] }
    const f = decodeFrame(encodeMessageFrame('#commit', body), 'shallow') as MessageFrame
    expect(f.body).toEqual({ seq: 5, repo: 'did:plc:é∑' })
    expect(f.sizes).toEqual({ blocks: 3, ops: 2 })
  })

  it('keeps a leading byte-order mark, as the full decode does (the same DID and rev for ordering and for verification)', () => {
    const body = { seq: 1, repo: '\uFEFFdid:plc:abc', rev: '\uFEFF3kaaaaaaaaa22', blocks: toBytes(new Uint8Array(1)), ops: [] }
    const bytes = encodeMessageFrame('#commit', body)
    const shallow = decodeFrame(bytes, 'shallow') as MessageFrame
    const full = decodeFrame(bytes) as MessageFrame
    expect(shallow.body.repo).toBe(full.body.repo)
    expect(shallow.body.rev).toBe(full.body.rev)
    expect((shallow.body.repo as string).length).toBe(12) // U+FEFF and the 11 characters of did:plc:abc
  })

  it('refuses what the full decode refuses at the top level: keys out of order, a body that is not a map', () => {
    const header = encode({ op: 1, t: '#commit' })
    const unordered = concat(header, new Uint8Array([0xa2, 0x63, 0x72, 0x65, 0x76, 0x01, 0x62, 0x6f, 0x70, 0x02]))
    expect(frameError(() => decodeFrame(unordered, 'shallow')).reason).toBe('bad-frame')
    expect(frameError(() => decodeFrame(concat(header, encode([1, 2])), 'shallow')).reason).toBe('bad-frame')
  })
})

describe('frameWithSeq', () => {
  const seqs = [0, 1, 23, 24, 255, 256, 65_535, 65_536, 4_294_967_295, 4_294_967_296, 20_000_000_000, 2 ** 53 - 1]

  it('splices seq into every real body, byte-identical to a re-encode', () => {
    for (const { t, b64 } of scenario) {
      const frame = decodeFrame(bytesOf(b64)) as MessageFrame
      for (const seq of seqs) {
        const spliced = frameWithSeq(t, frame.bodyBytes, seq)
        const expected = encodeMessageFrame(t, { ...frame.body, seq })
        expect(Buffer.from(spliced).equals(Buffer.from(expected))).toBe(true)
        const again = decodeFrame(spliced) as MessageFrame
        expect(again.body.seq).toBe(seq)
      }
    }
  })

  it('re-encodes when the body has no seq', () => {
    const body = encode({ did: 'did:plc:abc', time: '2026-01-01T00:00:00Z' })
    const out = frameWithSeq('#identity', body, 42)
    expect(Buffer.from(out).equals(Buffer.from(encodeMessageFrame('#identity', { did: 'did:plc:abc', time: '2026-01-01T00:00:00Z', seq: 42 })))).toBe(
      true,
    )
  })

  it('re-encodes when seq is not an integer', () => {
    const out = frameWithSeq('#x', encode({ seq: 'one', a: 1 }), 7)
    const [, body] = decodeFirst(out)
    expect(decode(body)).toEqual({ a: 1, seq: 7 })
  })

  it('rejects an invalid seq or an undecodable body', () => {
    expect(() => frameWithSeq('#x', encode({ seq: 1 }), -1)).toThrow(RangeError)
    expect(() => frameWithSeq('#x', encode({ seq: 1 }), 1.5)).toThrow(RangeError)
    expect(frameError(() => frameWithSeq('#x', new Uint8Array([0xa1, 0x63]), 1)).reason).toBe('bad-frame')
  })
})
