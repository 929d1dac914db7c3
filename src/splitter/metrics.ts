/**
 * Splitter gauges for Prometheus, computed at scrape time from the upstream
 * client: which relay it follows (mode and role), whether it is connected,
 * the upstream seq reached and how far behind the upstream's head it runs.
 */
import { Gauge, type Registry } from 'prom-client'
import type { UpstreamStatus } from './upstream-client.js'

export interface SplitterMetricsOptions {
  upstream: { status(): UpstreamStatus }
  registry: Registry
  now?: () => number
}

export function registerSplitterMetrics(opts: SplitterMetricsOptions): void {
  const registers = [opts.registry]
  const status = () => opts.upstream.status()
  const now = opts.now ?? Date.now
  new Gauge({
    name: 'relay_splitter_upstream_info',
    help: 'Always 1 in splitter mode: the upstream relay followed now and its role (primary, fallback)',
    labelNames: ['mode', 'upstream', 'role'],
    registers,
    collect() {
      const s = status()
      this.reset()
      this.set({ mode: 'splitter', upstream: s.url, role: s.role }, 1)
    },
  })
  new Gauge({
    name: 'relay_splitter_upstream_connected',
    help: '1 while the subscription to the upstream relay is open',
    registers,
    collect() {
      this.set(status().state === 'open' ? 1 : 0)
    },
  })
  new Gauge({
    name: 'relay_splitter_upstream_seq',
    help: 'Newest upstream seq accepted from the upstream relay',
    registers,
    collect() {
      this.set(status().seq)
    },
  })
  new Gauge({
    name: 'relay_splitter_upstream_lag_seconds',
    help: "Arrival time minus the newest event's time: how far behind the upstream's head the splitter runs",
    registers,
    collect() {
      this.set(status().lagSeconds ?? 0)
    },
  })
  new Gauge({
    name: 'relay_splitter_upstream_last_event_age_seconds',
    help: 'Seconds since the upstream relay last sent an event (0 before the first)',
    registers,
    collect() {
      const at = status().lastEventAt
      this.set(at === null ? 0 : Math.max(0, (now() - Date.parse(at)) / 1000))
    },
  })
}
