/** Ingest's own Prometheus metrics (drops and accepts are counted per host by HostStats). */
import { Counter, Gauge, type Registry } from 'prom-client'
import { BucketHistogram, type HistogramSeries } from '../stats/bucket-histogram.js'
import type { VerifyKind } from './verify-runner.js'

export interface IngestMetrics {
  /** Per kind, bound to the verifier's mode: observed once per #commit/#sync. */
  verifySeconds: Record<VerifyKind, HistogramSeries>
  tolerated: Counter<'reason'>
  accounts: Counter<'event'>
  retries: Counter
  collectionsUndecided: Counter
}

export function createIngestMetrics(
  registry: Registry,
  gauges: { inFlight: () => number; queued: () => number },
  verifyMode: 'inline' | 'workers',
): IngestMetrics {
  const registers = [registry]
  new Gauge({
    name: 'relay_ingest_in_flight',
    help: 'Events being processed now',
    registers,
    collect() {
      this.set(gauges.inFlight())
    },
  })
  new Gauge({
    name: 'relay_ingest_queued',
    help: 'Events waiting for their DID or for a free slot',
    registers,
    collect() {
      this.set(gauges.queued())
    },
  })
  return {
    verifySeconds: bindVerifySeconds(
      new BucketHistogram({
        name: 'relay_ingest_verify_seconds',
        help: 'Time to verify one #commit or #sync (CAR, signature, MST)',
        labelNames: ['kind', 'mode'],
        buckets: [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1],
        registers,
      }),
      verifyMode,
    ),
    tolerated: new Counter({
      name: 'relay_ingest_lenient_tolerated_total',
      help: 'Strict-mode failures forwarded anyway because the host or relay is lenient',
      labelNames: ['reason'],
      registers,
    }),
    accounts: new Counter({
      name: 'relay_ingest_account_changes_total',
      help: 'Accounts created, created throttled, moved between hosts, released from throttling',
      labelNames: ['event'],
      registers,
    }),
    retries: new Counter({
      name: 'relay_ingest_retries_total',
      help: 'Events processed again after a non-protocol failure (database, sequencer)',
      registers,
    }),
    collectionsUndecided: new Counter({
      name: 'relay_collections_undecided_total',
      help: 'Deletes whose proof blocks could not show whether their collection still has records (the account is kept in it)',
      registers,
    }),
  }
}

function bindVerifySeconds(h: BucketHistogram<'kind' | 'mode'>, mode: 'inline' | 'workers'): Record<VerifyKind, HistogramSeries> {
  return { commit: h.labels({ kind: 'commit', mode }), sync: h.labels({ kind: 'sync', mode }) }
}
