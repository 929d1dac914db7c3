/**
 * writeWsHeader against ws's own framing: the same bytes for every length
 * class (7-bit, 16-bit, 64-bit) and both opcodes, written in front of a frame
 * built with room for it.
 */
import { describe, expect, it } from 'vitest'
import { encode, toBytes } from '@atcute/cbor'
import { frameWithSeq, frameWithSeqAfter } from '../../src/atproto/frame.js'
import * as wsModule from 'ws'
import { MAX_WS_HEADER_BYTES, wsFrame, wsFrameParts, wsHeaderLength, writeWsHeader } from '../../src/http/ws-frame-header.js'

/** ws's own frame builder (a runtime export @types/ws does not declare): the independent reference. */
const Sender = ((wsModule as unknown as { Sender?: unknown; default?: { Sender?: unknown } }).Sender ??
  (wsModule as unknown as { default?: { Sender?: unknown } }).default?.Sender) as { frame(data: Buffer, o: object): Buffer[] }

/** What ws itself frames. */
function wsFramed(payload: Buffer, opcode: 1 | 2): Buffer {
  return Buffer.concat(Sender.frame(payload, { fin: true, rsv1: false, opcode, mask: false, readOnly: true }))
}

describe('writeWsHeader', () => {
  it.each([0, 1, 125, 126, 127, 65_535, 65_536, 70_000])('frames %i bytes exactly as ws does', (n) => {
    const payload = Buffer.alloc(n, 0x61)
    for (const [kind, opcode] of [['binary', 2], ['text', 1]] as const) {
      const buf = Buffer.alloc(MAX_WS_HEADER_BYTES + n)
      payload.copy(buf, MAX_WS_HEADER_BYTES)
      const start = writeWsHeader(buf, MAX_WS_HEADER_BYTES, n, kind)
      expect(MAX_WS_HEADER_BYTES - start).toBe(wsHeaderLength(n))
      expect(buf.subarray(start).equals(wsFramed(payload, opcode))).toBe(true)
      expect(wsFrame(payload, kind).equals(wsFramed(payload, opcode))).toBe(true)
      expect(Buffer.concat(wsFrameParts(payload, kind)).equals(wsFramed(payload, opcode))).toBe(true)
    }
  })

  it('refuses a header that does not fit before the payload', () => {
    expect(() => writeWsHeader(new Uint8Array(200), 3, 150)).toThrow(RangeError)
  })

  it('frames a sequenced event built with headroom without copying it again', () => {
    for (const body of [encode({ seq: 5, repo: 'did:plc:abc', blocks: toBytes(new Uint8Array(300)) }), encode({ did: 'did:plc:abc', time: '2026-01-01T00:00:00Z' })]) {
      const buf = frameWithSeqAfter(MAX_WS_HEADER_BYTES, '#commit', body, 123_456)
      const frame = buf.subarray(MAX_WS_HEADER_BYTES)
      expect(Buffer.from(frame).equals(Buffer.from(frameWithSeq('#commit', body, 123_456)))).toBe(true)
      const start = writeWsHeader(buf, MAX_WS_HEADER_BYTES, frame.length)
      expect(Buffer.from(buf.subarray(start)).equals(wsFramed(Buffer.from(frame), 2))).toBe(true)
    }
  })
})
