/**
 * Writing events to one Jetstream subscriber: the filters, the shared wire
 * frames (raw TCP writes, corked) or `ws` for permessage-deflate (the wait
 * for a full socket is http/socket-drain.ts). No state of its own: the
 * server's pump owns the subscriber's position.
 */
import { decodeFrame } from '../atproto/frame.js'
import type { JetBuildContext, JetEncoding, JetEvent } from './jet-event.js'
import type { JetstreamMetrics } from './metrics.js'
import type { Subscriber } from './subscriber.js'

export interface WriteContext {
  /** Bytes buffered for a socket before writing stops. */
  highWater: number
  build: JetBuildContext
  metrics: JetstreamMetrics
}

/** Writes the events in order while the socket has room; returns those not yet written. */
export function writeEvents(s: Subscriber, ctx: WriteContext, events: readonly JetEvent[]): JetEvent[] {
  let messages = 0
  let bytes = 0
  const raw = s.encoding !== 'deflate'
  const wire: JetEncoding = s.encoding === 'zstd' ? 'zstd' : 'text'
  let i = 0
  if (raw) s.socket.cork()
  for (; i < events.length; i++) {
    if (s.ws.bufferedAmount > ctx.highWater || !s.open) break
    const e = events[i] as JetEvent
    if (e.seq <= s.lastSeq) continue
    // An event whose account row is gone has no DID here: it passes only a subscriber without a DID filter.
    if (!e.removed && s.filter.wantsDid(e.did)) {
      for (const m of e.messages(s.wire, ctx.build)) {
        if (!s.filter.wants(m)) continue
        if (raw) {
          const frame = m.wire(wire, ctx.build)
          s.socket.write(frame)
          bytes += frame.length
        } else {
          s.ws.send(m.json, { binary: false })
          bytes += m.json.length
        }
        messages++
      }
    }
    s.lastSeq = e.seq
  }
  if (raw) s.socket.uncork()
  if (messages > 0) {
    s.messagesSent += messages
    s.lastWriteAt = Date.now()
    ctx.metrics.messages.inc({ encoding: s.encoding }, messages)
    ctx.metrics.bytes.inc({ encoding: s.encoding }, bytes)
  }
  return i < events.length ? events.slice(i) : []
}

/** An `#account` event saying the account is taken down (account events are rare: decoding one is cheap). */
export function isTakedown(frame: Uint8Array): boolean {
  try {
    const f = decodeFrame(frame)
    return f.op === 1 && f.body.active === false && f.body.status === 'takendown'
  } catch {
    return false
  }
}
