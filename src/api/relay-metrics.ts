/**
 * Per-host lag for Prometheus: how long since each connected host last sent an
 * event. A host whose connection is open but silent is the usual first sign of
 * a stuck PDS (or a relay that stopped reading it). Computed at scrape time
 * from the crawler's connections and the host stats; the host label is bounded
 * to the `maxHosts` laggiest hosts, and an unlabelled maximum covers them all.
 */
import { Gauge, type Registry } from 'prom-client'
import type { HostStatsSnapshot } from '../stats/host-stats.js'

export interface HostLagSource {
  /** Live connections (hostname and state). */
  connections(): { hostname: string; state: string; connectedSince: string | null }[]
}

export interface HostLagOptions {
  crawler: HostLagSource
  stats: { snapshot(hostname: string): HostStatsSnapshot }
  registry: Registry
  /** Hosts given their own label (the laggiest); default 50. */
  maxHosts?: number
  now?: () => number
}

/** Seconds since each open connection last delivered an event (or opened, if it never did). */
export function hostLagSeconds(opts: Pick<HostLagOptions, 'crawler' | 'stats' | 'now'>): { hostname: string; seconds: number }[] {
  const now = (opts.now ?? Date.now)()
  const out: { hostname: string; seconds: number }[] = []
  for (const c of opts.crawler.connections()) {
    if (c.state !== 'open') continue
    const last = opts.stats.snapshot(c.hostname).lastEventAt ?? c.connectedSince
    if (last === null) continue
    out.push({ hostname: c.hostname, seconds: Math.max(0, (now - Date.parse(last)) / 1000) })
  }
  return out.sort((a, b) => b.seconds - a.seconds)
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
      this.set(hostLagSeconds(opts)[0]?.seconds ?? 0)
    },
  })
}
