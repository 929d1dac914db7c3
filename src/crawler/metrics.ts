/** Crawler metrics, registered on the caller's registry. Not labelled by host: HostStats does that with bounded labels. */
import { Counter, Gauge, type Registry } from 'prom-client'

export class CrawlerMetrics {
  readonly connectedHosts: Gauge
  readonly heldBackHosts: Gauge
  readonly rateLimitedHosts: Gauge
  readonly attempts: Counter
  readonly failures: Counter<'reason'>
  readonly reconnects: Counter
  readonly futureCursor: Counter<'action'>
  readonly bytesIn: Counter
  readonly admissions: Counter<'result'>
  readonly probesSkipped: Counter<'reason'>

  constructor(registry: Registry) {
    const registers = [registry]
    this.connectedHosts = new Gauge({ name: 'relay_upstream_connected_hosts', help: 'Upstream hosts with an open subscribeRepos connection', registers })
    this.heldBackHosts = new Gauge({ name: 'relay_upstream_held_back_hosts', help: 'Upstream hosts whose reading is paused by backpressure or rate limits', registers })
    this.rateLimitedHosts = new Gauge({ name: 'relay_upstream_rate_limited_hosts', help: 'Upstream hosts held back by their event rate limits (any window; now or within the last 10 s)', registers })
    this.attempts = new Counter({ name: 'relay_upstream_connection_attempts_total', help: 'subscribeRepos dials to upstream hosts', registers })
    this.failures = new Counter({ name: 'relay_upstream_connection_failures_total', help: 'Upstream connections that failed or ended with an error, by reason', labelNames: ['reason'], registers })
    this.reconnects = new Counter({ name: 'relay_upstream_reconnects_total', help: 'Reconnects scheduled after an upstream connection ended', registers })
    this.futureCursor = new Counter({ name: 'relay_upstream_future_cursor_total', help: 'Upstream FutureCursor errors (host reset its sequence), by action taken', labelNames: ['action'], registers })
    this.bytesIn = new Counter({ name: 'relay_upstream_bytes_total', help: 'Bytes of WebSocket messages received from upstream hosts', registers })
    this.admissions = new Counter({ name: 'relay_host_admissions_total', help: 'requestCrawl outcomes', labelNames: ['result'], registers })
    this.probesSkipped = new Counter({
      name: 'relay_host_admission_probes_skipped_total',
      help: 'requestCrawl answered without a describeServer probe: failed_recently (refused from memory), probed_recently (known host woken)',
      labelNames: ['reason'],
      registers,
    })
  }
}
