/**
 * The frames of one host waiting to go to ingest, in order. Each one (#info
 * included) is counted against the host's rate limits before it is handed on;
 * while the limits or ingest's backpressure hold the host back, the owner is
 * told to stop reading the socket.
 */
import type { MessageFrame } from '../atproto/frame.js'
import type { UpstreamTicket } from '../sequencer/host-cursors.js'
import { HostRateLimiter, type HostRateLimits, type RateLimitState } from './rate-limit.js'
import type { RateLimitWindow } from './rate-limit-episode.js'

export type HoldReason = 'backpressure' | 'rate-limit'

export interface QueuedFrame {
  frame: MessageFrame
  /** Null for #info and frames without a valid seq. */
  ticket: UpstreamTicket | null
}

export interface FrameQueueOptions {
  limits: HostRateLimits
  /** Hands one frame on: undefined when taken at once, or a promise (never rejecting) for when there is room again. */
  deliver(item: QueuedFrame): Promise<void> | undefined
  /** The host went from flowing to held back (true) or back (false): pause or resume the socket. */
  onHold(held: boolean): void
  /** The rate limits make the host wait (each time), and one such wait is over. */
  onRateLimited?(window: RateLimitWindow, state: RateLimitState): void
  onRateWaitEnded?(): void
}

export class FrameQueue {
  private readonly opts: FrameQueueOptions
  private readonly limiter: HostRateLimiter
  private items: QueuedFrame[] = []
  private awaiting: Promise<void> | undefined
  private pumping = false
  private stopped = false
  private rateTimer: NodeJS.Timeout | undefined
  private heldBy: HoldReason | null = null

  constructor(opts: FrameQueueOptions) {
    this.opts = opts
    this.limiter = new HostRateLimiter(opts.limits)
  }

  get held(): HoldReason | null {
    return this.heldBy
  }

  get length(): number {
    return this.items.length
  }

  rateLimits(): RateLimitState {
    return this.limiter.state()
  }

  push(item: QueuedFrame): void {
    this.items.push(item)
    this.pump()
  }

  /** Drops the frames not yet handed on; their tickets are deferred, so the cursor never passes them. */
  clear(): void {
    const items = this.items
    this.items = []
    for (const item of items) item.ticket?.defer('discarded')
  }

  /** The rate limits change live; a host held by them is re-checked at once. */
  setLimits(limits: HostRateLimits): void {
    this.limiter.setLimits(limits)
    if (this.heldBy === 'rate-limit') {
      clearTimeout(this.rateTimer)
      this.rateTimer = undefined
      this.pump()
    }
  }

  /** Drops what is queued and waits for the frame ingest is still holding. */
  async stop(): Promise<void> {
    this.stopped = true
    clearTimeout(this.rateTimer)
    this.rateTimer = undefined
    this.clear()
    if (this.awaiting) await this.awaiting
    this.release()
  }

  /** Hands frames on in order until the rate limits or ingest hold the host back. */
  private pump(): void {
    if (this.pumping || this.awaiting || this.stopped) return
    this.pumping = true
    try {
      while (this.items.length > 0) {
        const wait = this.limiter.waitMs()
        if (wait > 0) {
          this.hold('rate-limit')
          this.opts.onRateLimited?.(this.limiter.blockingWindow() ?? 'perSecond', this.limiter.state())
          this.rateTimer ??= setTimeout(() => {
            this.rateTimer = undefined
            this.opts.onRateWaitEnded?.()
            this.pump()
          }, wait)
          return
        }
        const item = this.items.shift() as QueuedFrame
        this.limiter.record()
        const pending = this.opts.deliver(item)
        if (pending) {
          this.hold('backpressure')
          this.awaiting = pending.finally(() => {
            this.awaiting = undefined
            this.pump()
          })
          return
        }
      }
      this.release()
    } finally {
      this.pumping = false
    }
  }

  private hold(reason: HoldReason): void {
    const was = this.heldBy
    this.heldBy = reason
    if (was === null) this.opts.onHold(true)
  }

  private release(): void {
    if (this.heldBy === null) return
    this.heldBy = null
    this.opts.onHold(false)
  }
}
