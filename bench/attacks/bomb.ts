/**
 * The nesting bomb: a frame whose body is one array nested `depth` deep
 * (`0x81` = array of one item, repeated, ending in `0x00` = the integer 0).
 * Valid canonical DAG-CBOR, and with the default depth ~4.9 MB, under the
 * 5 MB frame limit. A hostile host (a FakePds on loopback, so it speaks
 * subscribeRepos and describeServer like any PDS) sends its bombs one at a
 * time to the relay's current connection, each once (never replayed), paced
 * by the relay (see `run`). So a relay that backs the host off receives fewer.
 */
import { encode } from '@atcute/cbor'
import { MAX_FRAME_BYTES } from '../../src/atproto/limits.js'
import { FakePds } from '../../test/helpers/fake-pds.js'

export const BOMB_DEPTH = 4_900_000

export function bombFrame(t: '#info' | '#commit', depth = BOMB_DEPTH): Uint8Array {
  const header = encode({ t, op: 1 })
  const frame = new Uint8Array(header.length + depth + 1)
  frame.set(header, 0)
  frame.fill(0x81, header.length, header.length + depth)
  frame[frame.length - 1] = 0x00
  if (frame.length > MAX_FRAME_BYTES) throw new Error(`bomb frame of ${frame.length} B exceeds the ${MAX_FRAME_BYTES} B frame limit`)
  return frame
}

export interface BombHostStats {
  hostname: string
  /** WebSocket connections the relay opened to it, ever. */
  connections: number
  /** Connections still open. */
  open: number
  framesSent: number
  bytesSent: number
}

export interface BombDelivery {
  t: '#info' | '#commit'
  /** which of the relay's connections (1 = first) it went out on */
  connection: number
  sentAtS: number
  /** ms until the relay counted it or closed the connection (null: neither within handledWaitMs) */
  handledAfterMs: number | null
  /** the relay closed the connection */
  relayClosed: boolean
}

export class BombHost {
  private constructor(private readonly pds: FakePds) {}

  static async start(): Promise<BombHost> {
    return new BombHost(await FakePds.start())
  }

  get hostname(): string {
    return this.pds.hostname
  }

  /** Resolves once the relay is subscribed (false after `timeoutMs`). */
  subscribed(timeoutMs: number): Promise<boolean> {
    return this.until(() => this.pds.openConnections > 0, timeoutMs)
  }

  /**
   * `count` #info bombs, then `count` #commit bombs. The next goes once the relay has dealt with the last:
   * counted it (`counted()` grew) or closed the connection, or after `handledWaitMs`. When the relay has
   * closed the connection, the next bomb waits up to `reconnectWaitMs` for it to come back; if it does not,
   * the run ends (the relay backed the host off). Everything ends at `deadlineMs` from now.
   */
  async run(opts: { count: number; counted: () => Promise<number>; handledWaitMs: number; reconnectWaitMs: number; deadlineMs: number; depth?: number }): Promise<BombDelivery[]> {
    const frames = [bombFrame('#info', opts.depth), bombFrame('#commit', opts.depth)]
    const t0 = performance.now()
    const left = () => t0 + opts.deadlineMs - performance.now()
    const out: BombDelivery[] = []
    for (let i = 0; i < 2 * opts.count && left() > 0; i++) {
      const t = i < opts.count ? '#info' : '#commit'
      if (!(await this.until(() => this.pds.openConnections > 0, Math.min(left(), i === 0 ? left() : opts.reconnectWaitMs)))) break
      const connection = this.pds.stats.connections
      const sentBefore = this.pds.stats.framesSent
      const countedBefore = await opts.counted()
      const at = performance.now()
      this.pds.emitRaw(frames[t === '#info' ? 0 : 1]!)
      await this.until(() => this.pds.stats.framesSent > sentBefore, left())
      const closed = () => this.pds.openConnections === 0 || this.pds.stats.connections !== connection
      let counted = false
      const waitUntil = performance.now() + Math.min(opts.handledWaitMs, left())
      while (!closed() && !counted && performance.now() < waitUntil) {
        counted = (await opts.counted()) > countedBefore
        if (!counted) await this.until(closed, 250)
      }
      const ms = Math.round(performance.now() - at)
      out.push({ t, connection, sentAtS: Math.round((at - t0) / 100) / 10, handledAfterMs: closed() || counted ? ms : null, relayClosed: closed() })
    }
    return out
  }

  private async until(cond: () => boolean, timeoutMs: number): Promise<boolean> {
    const deadline = performance.now() + timeoutMs
    while (!cond()) {
      if (performance.now() >= deadline) return false
      await new Promise((r) => setTimeout(r, 20))
    }
    return true
  }

  stats(): BombHostStats {
    const s = this.pds.stats
    return { hostname: this.pds.hostname, connections: s.connections, open: this.pds.openConnections, framesSent: s.framesSent, bytesSent: s.bytesSent }
  }

  close(): Promise<void> {
    return this.pds.close()
  }
}
