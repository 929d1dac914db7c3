/**
 * When a host is held back by its rate limits, as an episode: it starts the first
 * time the limiter makes the host wait and ends once the host has gone `quietMs`
 * without waiting (a wait counts until it is over). One log line at each end (not one per event), a gauge of
 * hosts in an episode, and a view for getHostStatus, listHosts and the admin API.
 * Inside an episode the hold flips between "rate limit" and "backpressure" per
 * event; the quiet period is what keeps that from reading as many episodes.
 */
import type { Gauge } from 'prom-client'
import type { Logger } from 'pino'
import type { RateLimitState } from './rate-limit.js'

export type RateLimitWindow = 'perSecond' | 'perHour' | 'perDay'

export interface RateLimitedView {
  /** When the episode started (ISO 8601). */
  since: string
  /** The longest window that has held the host back in this episode. */
  window: RateLimitWindow
  /** That window's limit. */
  limit: number
}

/** Long enough that a host kept at its hourly limit (events trickling through at the limit) stays in one episode. */
export const DEFAULT_RATE_LIMIT_QUIET_MS = 10_000

export class RateLimitEpisode {
  private started: { at: number; window: RateLimitWindow; limit: number } | null = null
  private lastHeldAt = 0
  private timer: NodeJS.Timeout | undefined

  constructor(
    private readonly log: Logger,
    private readonly gauge: Gauge,
    private readonly quietMs = DEFAULT_RATE_LIMIT_QUIET_MS,
  ) {}

  /** The limiter made the host wait (called on every such wait). */
  held(window: RateLimitWindow, state: RateLimitState, now = Date.now()): void {
    this.lastHeldAt = now
    if (this.started && RANK[window] <= RANK[this.started.window]) return
    const limit = state[window]
    const fields = { window, limit, count: state.counts[window] }
    const message = `host held back by its ${WINDOW_NAMES[window]} rate limit (${limit}): reading paused while it is over, nothing is dropped`
    // Per-second pacing is routine while a host catches up; an hourly or daily budget used up is the operator's business.
    if (window === 'perSecond') this.log.info(fields, message)
    else this.log.warn(fields, message)
    if (this.started) {
      this.started = { ...this.started, window, limit }
      return
    }
    this.started = { at: now, window, limit }
    this.gauge.inc()
    this.schedule(this.quietMs)
  }

  /** A rate-limit wait is over: the host was held back until now (an hourly wait can last minutes). */
  waitEnded(now = Date.now()): void {
    if (this.started) this.lastHeldAt = now
  }

  view(): RateLimitedView | null {
    if (!this.started) return null
    return { since: new Date(this.started.at).toISOString(), window: this.started.window, limit: this.started.limit }
  }

  /** The connection is closing for good: end quietly. */
  stop(): void {
    clearTimeout(this.timer)
    this.timer = undefined
    if (this.started) this.gauge.dec()
    this.started = null
  }

  private schedule(ms: number): void {
    this.timer = setTimeout(() => this.check(), ms)
    this.timer.unref()
  }

  private check(): void {
    this.timer = undefined
    if (!this.started) return
    const quietFor = Date.now() - this.lastHeldAt
    if (quietFor < this.quietMs) return this.schedule(this.quietMs - quietFor)
    const heldForMs = this.lastHeldAt - this.started.at
    this.log.info({ window: this.started.window, heldForMs }, 'host no longer held back by its rate limit')
    this.started = null
    this.gauge.dec()
  }
}

const WINDOW_NAMES: Record<RateLimitWindow, string> = { perSecond: 'per-second', perHour: 'hourly', perDay: 'daily' }
const RANK: Record<RateLimitWindow, number> = { perSecond: 0, perHour: 1, perDay: 2 }
