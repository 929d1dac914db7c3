/** Identity metrics, registered on the caller's Registry. */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client'

export interface IdentityMetrics {
  cacheHits: Counter<'layer'>
  /** A memory-layer hit: counted in a plain number (one per event) and added to `cacheHits` when scraped. */
  memoryHit(): void
  cacheMisses: Counter
  resolutions: Counter<'method' | 'result'>
  coalesced: Counter
  forcedRefreshes: Counter<'outcome'>
  staleServed: Counter
  storeErrors: Counter<'op'>
  rateLimitDelay: Counter<'method'>
  duration: Histogram<'method'>
  handleResolutions: Counter<'result'>
  handleVerifications: Counter<'result' | 'cached'>
}

export function createIdentityMetrics(registry: Registry, cacheSize: () => number): IdentityMetrics {
  const registers = [registry]
  new Gauge({
    name: 'relay_identity_cache_entries',
    help: 'DID resolutions held in memory',
    registers,
    collect() {
      this.set(cacheSize())
    },
  })
  let memoryHits = 0
  return {
    cacheHits: new Counter({
      name: 'relay_identity_cache_hits_total',
      help: 'Identity lookups served from a cache layer',
      labelNames: ['layer'],
      registers,
      collect() {
        if (memoryHits > 0) this.inc({ layer: 'memory' }, memoryHits)
        memoryHits = 0
      },
    }),
    memoryHit: () => {
      memoryHits++
    },
    cacheMisses: new Counter({ name: 'relay_identity_cache_misses_total', help: 'Identity lookups that needed a resolution', registers }),
    resolutions: new Counter({ name: 'relay_identity_resolutions_total', help: 'DID resolutions by method and result', labelNames: ['method', 'result'], registers }),
    coalesced: new Counter({ name: 'relay_identity_coalesced_total', help: 'Lookups that joined a resolution already in flight', registers }),
    forcedRefreshes: new Counter({
      name: 'relay_identity_forced_refreshes_total',
      help: 'Forced refreshes, fetched or suppressed by the per-DID limit',
      labelNames: ['outcome'],
      registers,
    }),
    staleServed: new Counter({ name: 'relay_identity_stale_served_total', help: 'Good results kept because a re-resolution failed', registers }),
    storeErrors: new Counter({ name: 'relay_identity_store_errors_total', help: 'identity table reads/writes that failed', labelNames: ['op'], registers }),
    rateLimitDelay: new Counter({
      name: 'relay_identity_rate_limit_delay_seconds_total',
      help: 'Time resolutions waited for the per-target rate limit',
      labelNames: ['method'],
      registers,
    }),
    duration: new Histogram({
      name: 'relay_identity_resolution_duration_seconds',
      help: 'DID resolution time (network), by method',
      labelNames: ['method'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    }),
    handleResolutions: new Counter({ name: 'relay_identity_handle_resolutions_total', help: 'Handle resolutions by result', labelNames: ['result'], registers }),
    handleVerifications: new Counter({
      name: 'relay_identity_handle_verifications_total',
      help: 'Bidirectional handle checks by result',
      labelNames: ['result', 'cached'],
      registers,
    }),
  }
}
