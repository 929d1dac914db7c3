/** One Jetstream subscriber: a position in the stream, a filter and a socket; no queue (the pull model, server.ts). */
import type { Socket } from 'node:net'
import type WebSocket from 'ws'
import { ReadProgress } from '../firehose/slow-reader.js'
import type { JetFilter } from './filter.js'
import type { JetEvent, JetWire } from './jet-event.js'
import type { SubscriberState, WireEncoding } from './metrics.js'

export type State = SubscriberState | 'closed'

export class Subscriber {
  state: State = 'catchup'
  /** The seq of the last event passed (sent or filtered out). */
  lastSeq: number
  reachedLive = false
  /** Its read rate while beyond the lag (firehose/slow-reader.ts). */
  readonly progress = new ReadProgress()
  /** Events of a log page not yet written (the socket filled up mid-page). */
  pending: JetEvent[] = []
  wake: (() => void) | undefined
  messagesSent = 0
  /** When events were last written (heartbeat.ts pings only idle subscribers). */
  lastWriteAt = Date.now()
  /** When the unanswered ping was sent; undefined once its pong arrives. */
  pingSentAt: number | undefined

  constructor(
    readonly id: number,
    readonly ws: WebSocket,
    readonly socket: Socket,
    readonly wire: JetWire,
    readonly encoding: WireEncoding,
    public filter: JetFilter,
    readonly remoteAddress: string,
    startSeq: number,
  ) {
    this.lastSeq = startSeq
  }

  get open(): boolean {
    return this.state !== 'closed' && !this.socket.destroyed
  }

  signal(): void {
    const wake = this.wake
    this.wake = undefined
    wake?.()
  }
}
