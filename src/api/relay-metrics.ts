/**
 * Per-host lag for Prometheus: how long since each connected host last sent an
 * event. A host whose connection is open but silent is the usual first sign of
 * a stuck PDS (or a relay that stopped reading it). Computed at scrape time
 * from the crawler's connections and the host stats; the host label is bounded
 * to the `maxHosts` laggiest hosts, and an unlabelled maximum covers them all.
 */
import { Gauge, type Registry } from 'prom-client'

export interface HostLagSource {
  /** Open connections: hostname and when each opened (ms). */
  openConnections(): Iterable<{ hostname: string; openSince: number }>
}

export interface HostLagOptions {
  crawler: HostLagSource
  stats: { lastEventAtMs(hostname: string): number | null }
  registry: Registry
  /** Hosts given their own label (the laggiest); default 50. */
  maxHosts?: number
  now?: () => number
}

/**
 * Seconds since each open connection last delivered an event (or opened, if it never did).
 * Two number reads per host and no allocation beyond the result: a scrape walks every host twice
 * (building each connection's status and snapshot instead cost ~30 ms per pass at 3,000 hosts).
 */
export function hostLagSeconds(opts: Pick<HostLagOptions, 'crawler' | 'stats' | 'now'>): { hostname: string; seconds: number }[] {
  const now = (opts.now ?? Date.now)()
  const out: { hostname: string; seconds: number }[] = []
  for (const c of opts.crawler.openConnections()) {
    const last = opts.stats.lastEventAtMs(c.hostname) ?? c.openSince
    out.push({ hostname: c.hostname, seconds: Math.max(0, (now - last) / 1000) })
  }
  return out.sort((a, b) => b.seconds - a.seconds)
}

/** The largest of hostLagSeconds, in one pass without sorting. */
export function maxHostLagSeconds(opts: Pick<HostLagOptions, 'crawler' | 'stats' | 'now'>): number {
  const now = (opts.now ?? Date.now)()
  let max = 0
  for (const c of opts.crawler.openConnections()) max = Math.max(max, (now - (opts.stats.lastEventAtMs(c.hostname) ?? c.openSince)) / 1000)
  return max
}

export function registerHostLagMetrics(opts: HostLagOptions): void {
  const maxHosts = opts.maxHosts ?? 50
  new Gauge({
    name: 'relay_upstream_last_event_age_seconds',
    help: `Seconds since a connected host last sent an event (the ${maxHosts} laggiest hosts)`,
    labelNames: ['host'],
    registers: [opts.registry],
    collect() {
      // Reset so hosts that caught up or disconnected drop out instead of keeping a stale value.
      this.reset()
      for (const { hostname, seconds } of hostLagSeconds(opts).slice(0, maxHosts)) this.set({ host: hostname }, seconds)
    },
  })
  new Gauge({
    name: 'relay_upstream_last_event_age_max_seconds',
    help: 'The largest relay_upstream_last_event_age_seconds over every connected host',
    registers: [opts.registry],
    collect() {
      this.set(maxHostLagSeconds(opts))
    },
  })
}
