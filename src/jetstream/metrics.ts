/** Jetstream's Prometheus metrics (documented in docs/operations.md). */
import { Counter, Gauge, type Registry } from 'prom-client'
import type { JetstreamCutOffReason } from './cut-off-reasons.js'

export type SubscriberState = 'hello' | 'catchup' | 'live'
export type WireEncoding = 'text' | 'zstd' | 'deflate'

export class JetstreamMetrics {
  readonly connections: Counter
  readonly messages: Counter<'encoding'>
  readonly bytes: Counter<'encoding'>
  readonly cutOff: Counter<'reason'>
  readonly plainBytes: Counter
  readonly compressedBytes: Counter
  readonly skippedOps: Counter
  readonly undecodable: Counter
  readonly ignoredMessages: Counter<'kind'>

  constructor(registry: Registry, subscribers: () => Iterable<{ state: SubscriberState | 'closed' }>) {
    const registers = [registry]
    new Gauge({
      name: 'relay_jetstream_subscribers',
      help: 'Connected Jetstream subscribers, by state (hello: waiting for requireHello)',
      labelNames: ['state'],
      registers,
      collect() {
        const counts: Record<SubscriberState, number> = { hello: 0, catchup: 0, live: 0 }
        // A closed one is still listed until its socket's close event.
        for (const s of subscribers()) if (s.state !== 'closed') counts[s.state]++
        for (const [state, n] of Object.entries(counts)) this.set({ state }, n)
      },
    })
    this.connections = new Counter({ name: 'relay_jetstream_connections_total', help: 'Accepted Jetstream connections', registers })
    this.messages = new Counter({ name: 'relay_jetstream_messages_sent_total', help: 'Jetstream messages sent, by encoding (text, zstd, deflate)', labelNames: ['encoding'], registers })
    this.bytes = new Counter({
      name: 'relay_jetstream_bytes_sent_total',
      help: 'Jetstream bytes sent, by encoding (text and zstd: wire bytes; deflate: JSON bytes before compression)',
      labelNames: ['encoding'],
      registers,
    })
    this.cutOff = new Counter({ name: 'relay_jetstream_cut_off_total', help: 'Jetstream subscribers closed by the relay, by reason', labelNames: ['reason'], registers })
    this.plainBytes = new Counter({ name: 'relay_jetstream_zstd_input_bytes_total', help: 'JSON bytes compressed with zstd (once per message, shared)', registers })
    this.compressedBytes = new Counter({ name: 'relay_jetstream_zstd_output_bytes_total', help: 'zstd bytes produced (once per message, shared)', registers })
    const plain = this.plainBytes
    const compressed = this.compressedBytes
    new Gauge({
      name: 'relay_jetstream_zstd_ratio',
      help: 'Compressed ÷ plain bytes over every zstd frame built so far (0 before the first)',
      registers,
      async collect() {
        const [p, c] = await Promise.all([plain.get(), compressed.get()])
        const pv = p.values[0]?.value ?? 0
        this.set(pv > 0 ? (c.values[0]?.value ?? 0) / pv : 0)
      },
    })
    this.skippedOps = new Counter({
      name: 'relay_jetstream_skipped_ops_total',
      help: 'Commit ops not sent on Jetstream: record block missing or undecodable (logged)',
      registers,
    })
    this.ignoredMessages = new Counter({
      name: 'relay_jetstream_client_messages_ignored_total',
      help: 'v1 client messages ignored, by kind (not-json: binary or unparsable; unknown-type: not an options_update)',
      labelNames: ['kind'],
      registers,
    })
    this.undecodable = new Counter({ name: 'relay_jetstream_undecodable_events_total', help: 'Logged events Jetstream could not decode (logged; not sent)', registers })
  }

  countCutOff(reason: JetstreamCutOffReason): void {
    this.cutOff.inc({ reason })
  }
}
