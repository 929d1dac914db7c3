/**
 * A WebSocket close reason within RFC 6455's 123-byte limit. `ws` throws (a RangeError, inside its
 * message handler, where nothing catches it) when a reason is longer in UTF-8 bytes; reasons that
 * quote what a client sent can be, so they are cut here on a character boundary.
 */
export const MAX_CLOSE_REASON_BYTES = 123

export function closeReason(text: string): string {
  if (Buffer.byteLength(text) <= MAX_CLOSE_REASON_BYTES) return text
  let out = ''
  let bytes = 0
  for (const ch of text) {
    const n = Buffer.byteLength(ch)
    if (bytes + n > MAX_CLOSE_REASON_BYTES - 3) break
    out += ch
    bytes += n
  }
  return `${out}...`
}
