/**
 * Unmasked, unfragmented WebSocket messages (RFC 6455 §5.2), what a server
 * sends: FIN + opcode, then the payload length in 7 bits, or 126 and 16 bits,
 * or 127 and 64 bits. The one place the relay frames messages for the wire:
 * written in front of a payload built with room for it (the sequencer's
 * frames, so a consumer's message is built once without copying the payload
 * again), or around any other payload (`wsFrame`, `wsFrameParts`).
 */

/** Room to leave in front of a payload for any header. */
export const MAX_WS_HEADER_BYTES = 10

const OPCODE = { text: 0x1, binary: 0x2 } as const

export function wsHeaderLength(payloadLength: number): number {
  return payloadLength < 126 ? 2 : payloadLength < 0x10000 ? 4 : 10
}

/**
 * Writes the header for the `payloadLength` bytes that start at `payloadStart`
 * in `buf`, ending right there; returns where it starts.
 */
export function writeWsHeader(buf: Uint8Array, payloadStart: number, payloadLength: number, kind: 'binary' | 'text' = 'binary'): number {
  const start = payloadStart - wsHeaderLength(payloadLength)
  if (start < 0) throw new RangeError(`no room for a WebSocket header before offset ${payloadStart}`)
  buf[start] = 0x80 | OPCODE[kind]
  if (payloadLength < 126) {
    buf[start + 1] = payloadLength
  } else if (payloadLength < 0x10000) {
    buf[start + 1] = 126
    buf[start + 2] = payloadLength >>> 8
    buf[start + 3] = payloadLength & 0xff
  } else {
    buf[start + 1] = 127
    const high = Math.floor(payloadLength / 0x100000000)
    const low = payloadLength >>> 0
    for (let i = 0; i < 4; i++) {
      buf[start + 2 + i] = (high >>> (24 - 8 * i)) & 0xff
      buf[start + 6 + i] = (low >>> (24 - 8 * i)) & 0xff
    }
  }
  return start
}

/** The header and the payload of one message, without copying the payload. */
export function wsFrameParts(payload: Uint8Array, kind: 'binary' | 'text' = 'binary'): Buffer[] {
  const length = wsHeaderLength(payload.length)
  const header = Buffer.allocUnsafe(length)
  writeWsHeader(header, length, payload.length, kind)
  return [header, Buffer.isBuffer(payload) ? payload : Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength)]
}

/** One Buffer holding a whole message: built once, written to every socket. */
export function wsFrame(payload: Uint8Array, kind: 'binary' | 'text' = 'binary'): Buffer {
  const length = wsHeaderLength(payload.length)
  const out = Buffer.allocUnsafe(length + payload.length)
  writeWsHeader(out, length, payload.length, kind)
  out.set(payload, length)
  return out
}
