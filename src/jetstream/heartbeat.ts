/**
 * Liveness for Jetstream subscribers, as the CBOR firehose does for its consumers
 * (firehose.ts pingIdle, same interval): a subscriber nothing was written to for an
 * interval is pinged; one that has not answered two intervals after its ping is
 * unresponsive. A subscriber whose socket still holds unsent bytes is not judged
 * here: it is not reading, which is the `too-slow` policy's business (maxLag and the
 * floor rate, firehose/slow-reader.ts).
 */
import type { Subscriber } from './subscriber.js'

/** With requireHello, how long a subscriber may stay silent before its first options_update. */
export const HELLO_TIMEOUT_MS = 30_000

/** Pings idle subscribers; calls `unresponsive` for each that never answered. */
export function pingIdle(subscribers: Iterable<Subscriber>, intervalMs: number, now: number, unresponsive: (s: Subscriber) => void): void {
  for (const s of subscribers) {
    if (!s.open) continue
    if (s.pingSentAt !== undefined) {
      if (now - s.pingSentAt >= 2 * intervalMs && s.socket.writableLength === 0) unresponsive(s)
      continue
    }
    if (now - s.lastWriteAt >= intervalMs) {
      s.pingSentAt = now
      s.ws.ping()
    }
  }
}
