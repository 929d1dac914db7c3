/**
 * Bounds the public work that reaches a database pool: at most `concurrency`
 * at once (the pool size, so no query ever waits on a pool connect and times
 * out as a 500), a short queue behind them, and beyond that a 503
 * ServiceUnavailable with Retry-After. 503, not 429: the relay is at capacity,
 * not this client over its share (per-client limits answer 429).
 */
import { Semaphore } from '../semaphore.js'
import type { RefusalLimit, RefusalMetrics } from './refusals.js'
import { XrpcError } from '../atproto/xrpc-error.js'

export interface QueryGateOptions {
  /** `query` (sync queries) or `crawl` (requestCrawl): the label on relay_api_gate_slots and in refusals. */
  name: 'query' | 'crawl'
  concurrency: number
  /** RELAY_DB_QUERY_QUEUE */
  maxWaiting: number
  /** RELAY_DB_QUERY_WAIT */
  waitMs: number
  refusals: RefusalMetrics
}

export class QueryGate {
  private readonly slots: Semaphore
  private readonly refusal: RefusalLimit

  constructor(private readonly opts: QueryGateOptions) {
    this.slots = new Semaphore(opts.concurrency)
    this.refusal = opts.name === 'query' ? 'query_busy' : 'crawl_busy'
  }

  get name(): string {
    return this.opts.name
  }

  /** Work running and waiting now (relay_api_gate_slots). */
  stats(): { active: number; waiting: number } {
    return this.slots.stats
  }

  /** Runs `work` in a slot, or throws 503 when none frees up within the wait. */
  async run<T>(route: string, work: () => Promise<T>): Promise<T> {
    const release = await this.slots.tryAcquire({ maxWaiting: this.opts.maxWaiting, timeoutMs: this.opts.waitMs })
    if (!release) {
      this.opts.refusals.refused(this.refusal, route)
      throw new XrpcError(503, 'ServiceUnavailable', `the relay is busy (${this.opts.name} capacity in use); try again shortly`, { 'Retry-After': '1' })
    }
    try {
      return await work()
    } finally {
      release()
    }
  }
}
