/**
 * The per-consumer catch-up loop of the firehose: a consumer that connected with a cursor,
 * or fell behind the live fan-out, is fed from the in-memory ring or (older than the ring)
 * the event log, paced on its socket draining, until it reaches the head and goes live.
 * The live fan-out and the cut-offs are the Firehose's (firehose.ts).
 */
import type { Logger } from 'pino'
import type { Counter } from 'prom-client'
import { encodeInfoFrame } from '../atproto/frame.js'
import { socketDrained } from '../http/socket-drain.js'
import type { LoggedEvent } from '../sequencer/event-log.js'
import type { CommittedEventSource } from '../sequencer/types.js'
import { Semaphore } from '../semaphore.js'
import type { Consumer, LogPage } from './consumer.js'
import { wsFrame, wsFrameParts, type FrameRing, type RingEntry } from './ring.js'

/** What the firehose reads from the durable log. */
export interface ReplaySource {
  readRange(afterSeq: number, limit: number): Promise<LoggedEvent[]>
  oldestSeq(): Promise<number | undefined>
}

export interface CatchUpOptions {
  source: CommittedEventSource
  log: ReplaySource
  /** The current ring (the Firehose replaces it when the stream resets). */
  ring: () => FrameRing
  highWaterBytes: number
  pageSize: number
  maxConcurrentLogReads: number
  logger: Logger
  eventsSent: Counter
  bytesSent: Counter
  /** Closes a consumer whose replay failed (a cut-off, counted by the Firehose). */
  fail: (c: Consumer, err: unknown) => void
}

/** Switches a consumer to the live set (broadcast writes), unless it is closed. */
export function goLive(c: Consumer): void {
  if (c.state === 'closed') return
  c.state = 'live'
  c.reachedLive = true
}

export class CatchUp {
  private readonly source: CommittedEventSource
  private readonly log: ReplaySource
  private readonly ring: () => FrameRing
  private readonly highWater: number
  private readonly pageSize: number
  private readonly logReads: Semaphore
  private readonly logger: Logger
  private readonly mEvents: Counter
  private readonly mBytes: Counter
  private readonly fail: (c: Consumer, err: unknown) => void

  constructor(opts: CatchUpOptions) {
    this.source = opts.source
    this.log = opts.log
    this.ring = opts.ring
    this.highWater = opts.highWaterBytes
    this.pageSize = opts.pageSize
    this.logReads = new Semaphore(opts.maxConcurrentLogReads)
    this.logger = opts.logger
    this.mEvents = opts.eventsSent
    this.mBytes = opts.bytesSent
    this.fail = opts.fail
  }

  /** A consumer connected with a cursor: settles where it starts (OutdatedCursor if retention passed it), then pumps. */
  async startReplay(c: Consumer, cursor: number, headAtConnect: number): Promise<void> {
    c.state = 'catchup'
    c.pumping = true
    try {
      const oldest = await this.logReads.run(() => this.log.oldestSeq())
      // Events after the cursor were dropped by retention (cursor 0 asks for the whole window: no notice).
      const outdated = cursor > 0 && (oldest !== undefined ? cursor < oldest - 1 : cursor < headAtConnect)
      if (outdated && c.state === 'catchup') {
        this.logger.info({ consumer: c.id, cursor, oldest }, 'firehose consumer cursor is older than the window')
        c.send(wsFrame(encodeInfoFrame('OutdatedCursor', 'cursor is older than the replay window; starting from the oldest event')))
      }
      // Start at the oldest retained event even if the ring still holds older ones.
      if (outdated || cursor === 0) c.lastSent = Math.max(c.lastSent, oldest !== undefined ? oldest - 1 : headAtConnect)
    } catch (err) {
      c.pumping = false
      this.fail(c, err)
      return
    }
    c.pumping = false
    await this.pump(c)
  }

  /** Feeds a catching-up consumer from the ring or the log until it reaches the head, pacing on socket drain. */
  async pump(c: Consumer): Promise<void> {
    if (c.pumping || c.state !== 'catchup') return
    c.pumping = true
    try {
      while (c.state === 'catchup' && c.open) {
        if (c.buffered() > this.highWater) {
          await socketDrained(c.socket)
          continue
        }
        if (c.lastSent >= this.source.currentSeq()) {
          goLive(c)
          break
        }
        if (c.lastSent >= this.ring().floor) this.sendFromRing(c)
        else await this.sendFromLog(c)
      }
    } catch (err) {
      this.fail(c, err)
    } finally {
      c.pumping = false
    }
  }

  private sendFromRing(c: Consumer): void {
    const ring = this.ring()
    const end = ring.end()
    let i = ring.indexAfter(c.lastSent)
    let events = 0
    let bytes = 0
    c.socket.cork()
    for (; i < end && c.buffered() <= this.highWater; i++) {
      const entry = ring.at(i) as RingEntry
      if (!entry.removed) {
        c.socket.write(entry.wire)
        events++
        bytes += entry.wire.length
      }
      c.lastSent = entry.seq
    }
    c.socket.uncork()
    this.count(c, events, bytes)
    // Everything published is in the ring, so its end is the head: switch in the same tick, no gap.
    if (i >= end) goLive(c)
  }

  private async sendFromLog(c: Consumer): Promise<void> {
    const pending = c.prefetch ?? this.readPage(c.lastSent)
    c.prefetch = undefined
    const { afterSeq, rows, headBefore } = await pending
    if (c.state !== 'catchup') return
    // A prefetched page that no longer starts where the consumer is (it was served from the ring meanwhile).
    if (afterSeq !== c.lastSent) return
    if (rows.length === 0) {
      c.lastSent = Math.max(c.lastSent, headBefore)
      return
    }
    // A reader that keeps reading is never cut off for being behind, so it can fall out of the
    // replay window: say so, as a cursor older than the window is told, rather than skip silently.
    const first = rows[0] as LoggedEvent
    if (first.seq > afterSeq + 1 && (await this.passedByRetention(c, afterSeq))) {
      this.logger.warn({ consumer: c.id, seq: afterSeq, oldest: first.seq }, 'firehose consumer fell out of the replay window')
      c.send(wsFrame(encodeInfoFrame('OutdatedCursor', 'fell behind the replay window; continuing from the oldest retained event')))
    }
    if (c.state !== 'catchup') return
    let events = 0
    let bytes = 0
    c.socket.cork()
    for (const row of rows) {
      if (row.seq <= c.lastSent) continue
      for (const part of wsFrameParts(row.frame)) {
        c.socket.write(part)
        bytes += part.length
      }
      events++
      c.lastSent = row.seq
    }
    c.socket.uncork()
    this.count(c, events, bytes)
    // Read the next page while this one drains to the socket.
    if (rows.length === this.pageSize && c.lastSent < this.ring().floor) {
      const next = this.readPage(c.lastSent)
      next.catch(() => undefined) // awaited (and reported) by the next round
      c.prefetch = next
    }
  }

  /** Whether retention dropped events after `afterSeq` (a gap can also be a takedown's removed events). */
  private async passedByRetention(c: Consumer, afterSeq: number): Promise<boolean> {
    const oldest = await this.logReads.run(() => this.log.oldestSeq())
    return c.state === 'catchup' && oldest !== undefined && oldest > afterSeq + 1
  }

  private readPage(afterSeq: number): Promise<LogPage> {
    return this.logReads.run(async () => {
      // Every event up to here is committed, so the read below sees it (if it is still retained).
      const headBefore = this.source.currentSeq()
      const rows = await this.log.readRange(afterSeq, this.pageSize)
      return { afterSeq, rows, headBefore }
    })
  }

  private count(c: Consumer, events: number, bytes: number): void {
    if (events === 0) return
    c.eventsSent += events
    c.lastWriteAt = Date.now()
    this.mEvents.inc(events)
    this.mBytes.inc(bytes)
  }
}
