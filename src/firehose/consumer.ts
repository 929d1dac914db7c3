/**
 * One connected firehose consumer: its socket, where it is in the stream, and
 * whether it is fed live (broadcast writes) or catching up (pulled from the ring or the log).
 */
import type { Socket } from 'node:net'
import type WebSocket from 'ws'
import type { LoggedEvent } from '../sequencer/event-log.js'
import { ReadProgress } from './slow-reader.js'

/** One page read from the event log for a catching-up consumer. */
export interface LogPage {
  afterSeq: number
  rows: LoggedEvent[]
  /** The committed seq when the read started: every event up to it that is still retained is in (or before) `rows`. */
  headBefore: number
}

export type ConsumerState = 'catchup' | 'live' | 'closed'

export interface ConsumerInfo {
  id: number
  remoteAddress: string
  userAgent: string
  eventsSent: number
  /** ISO time of connection */
  connectedAt: string
  /** The cursor requested on connect (null: live only). */
  cursor: number | null
  /** Events (by seq) between the newest committed event and the last one sent. */
  lag: number
  /** Bytes waiting in the relay's socket buffer for this consumer. */
  bufferedBytes: number
  state: ConsumerState
}

export class Consumer {
  state: ConsumerState = 'catchup'
  /** The seq of the last event written to the socket (or skipped as not applicable). */
  lastSent: number
  /** Once live, falling too far behind and reading too slowly is ConsumerTooSlow; a first backfill from a cursor is not. */
  reachedLive = false
  /** Its read rate while beyond the lag (slow-reader.ts). */
  readonly progress = new ReadProgress()
  pumping = false
  eventsSent = 0
  bytesSent = 0
  lastWriteAt = Date.now()
  awaitingPong = false
  /** The next page of the log, read ahead while the previous one drains. */
  prefetch: Promise<LogPage> | undefined
  readonly connectedAt = new Date()

  constructor(
    readonly id: number,
    readonly ws: WebSocket,
    /** The underlying TCP socket: pre-framed messages are written here directly. */
    readonly socket: Socket,
    readonly remoteAddress: string,
    readonly userAgent: string,
    readonly cursor: number | null,
    startSeq: number,
  ) {
    this.lastSent = startSeq
  }

  /** Writes one pre-framed message outside the fan-out and catch-up loops (notices, error frames). */
  send(wire: Buffer): void {
    this.socket.write(wire)
    this.lastWriteAt = Date.now()
  }

  /** Bytes queued in user space for this socket. */
  buffered(): number {
    return this.socket.writableLength
  }

  get open(): boolean {
    return this.state !== 'closed' && !this.socket.destroyed
  }

  info(head: number): ConsumerInfo {
    return {
      id: this.id,
      remoteAddress: this.remoteAddress,
      userAgent: this.userAgent,
      eventsSent: this.eventsSent,
      connectedAt: this.connectedAt.toISOString(),
      cursor: this.cursor,
      lag: Math.max(0, head - this.lastSent),
      bufferedBytes: this.socket.writableLength,
      state: this.state,
    }
  }
}
