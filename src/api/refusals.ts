/** One counter for every request the API refuses to protect itself: by which limit and on which route. */
import { Counter, type Registry } from 'prom-client'

/** client_rate, client_concurrency, firehose_connections, crawl_rate: per client (429); query_busy, crawl_busy: the relay is at capacity (503). */
export type RefusalLimit = 'client_rate' | 'client_concurrency' | 'firehose_connections' | 'crawl_rate' | 'query_busy' | 'crawl_busy'

export class RefusalMetrics {
  private readonly counter: Counter<'limit' | 'route'>

  constructor(registry: Registry) {
    this.counter = new Counter({
      name: 'relay_api_refusals_total',
      help: 'API requests refused by a limit (429 per client, 503 at capacity), by limit and route',
      labelNames: ['limit', 'route'],
      registers: [registry],
    })
  }

  refused(limit: RefusalLimit, route: string): void {
    this.counter.inc({ limit, route })
  }
}
