/**
 * Per-host counters of what arrived, what was forwarded and what was dropped
 * and why. One instance is shared by the crawler (transport-level drops) and
 * the ingest pipeline; it feeds Prometheus, getHostStatus and the admin page.
 *
 * Prometheus label cardinality is bounded: the first `maxHostLabels` hosts to
 * send traffic get their own label, the rest are counted under "other"; the
 * in-memory snapshot used by the API keeps every host exactly.
 */
import { Counter, type Registry } from 'prom-client'
import type { DropReason } from '../atproto/drop-reasons.js'
import { clipUpstreamText } from '../upstream-text.js'

export interface HostStatsSnapshot {
  received: number
  accepted: number
  dropped: Partial<Record<DropReason, number>>
  discontinuities: number
  lastError: { message: string; at: string } | null
  lastEventAt: string | null
}

interface Entry {
  received: number
  accepted: number
  dropped: Map<DropReason, number>
  discontinuities: number
  lastError: { message: string; at: string } | null
  lastEventAt: number
}

export class HostStats {
  private readonly hosts = new Map<string, Entry>()
  private readonly labelled = new Set<string>()
  private readonly receivedTotal: Counter<'host' | 'kind'>
  private readonly acceptedTotal: Counter<'host' | 'kind'>
  private readonly droppedTotal: Counter<'host' | 'reason'>
  private readonly discontinuityTotal: Counter<'host'>

  constructor(
    registry: Registry,
    private readonly maxHostLabels = 50,
  ) {
    this.receivedTotal = new Counter({ name: 'relay_events_received_total', help: 'Upstream events received, by host and type', labelNames: ['host', 'kind'], registers: [registry] })
    this.acceptedTotal = new Counter({ name: 'relay_events_accepted_total', help: 'Events accepted and sequenced, by host and type', labelNames: ['host', 'kind'], registers: [registry] })
    this.droppedTotal = new Counter({ name: 'relay_events_dropped_total', help: 'Upstream events dropped, by host and reason', labelNames: ['host', 'reason'], registers: [registry] })
    this.discontinuityTotal = new Counter({ name: 'relay_discontinuities_total', help: 'Valid commits whose since/prevData did not match the stored head (forwarded)', labelNames: ['host'], registers: [registry] })
  }

  received(host: string, kind: string): void {
    const e = this.entry(host)
    e.received++
    e.lastEventAt = Date.now()
    this.receivedTotal.inc({ host: this.label(host), kind })
  }

  accepted(host: string, kind: string): void {
    this.entry(host).accepted++
    this.acceptedTotal.inc({ host: this.label(host), kind })
  }

  dropped(host: string, reason: DropReason): void {
    const e = this.entry(host)
    e.dropped.set(reason, (e.dropped.get(reason) ?? 0) + 1)
    this.droppedTotal.inc({ host: this.label(host), reason })
  }

  discontinuity(host: string): void {
    this.entry(host).discontinuities++
    this.discontinuityTotal.inc({ host: this.label(host) })
  }

  /** Keeps the most recent problem; clipped, because hosts choose much of this text and it is held per host. */
  setLastError(host: string, message: string): void {
    this.entry(host).lastError = { message: clipUpstreamText(message), at: new Date().toISOString() }
  }

  snapshot(host: string): HostStatsSnapshot {
    const e = this.hosts.get(host)
    if (!e) return { received: 0, accepted: 0, dropped: {}, discontinuities: 0, lastError: null, lastEventAt: null }
    return {
      received: e.received,
      accepted: e.accepted,
      dropped: Object.fromEntries(e.dropped),
      discontinuities: e.discontinuities,
      lastError: e.lastError,
      lastEventAt: e.lastEventAt ? new Date(e.lastEventAt).toISOString() : null,
    }
  }

  /** When the host last sent an event (ms), null if never: snapshot()'s lastEventAt without building a snapshot. */
  lastEventAtMs(host: string): number | null {
    return this.hosts.get(host)?.lastEventAt || null
  }

  /** Total drops by reason across hosts (for tests and the admin overview). */
  droppedByReason(): Partial<Record<DropReason, number>> {
    const out: Partial<Record<DropReason, number>> = {}
    for (const e of this.hosts.values()) for (const [reason, n] of e.dropped) out[reason] = (out[reason] ?? 0) + n
    return out
  }

  /** Every host's counters so far (for the admin page's per-minute history): received, accepted, dropped by reason. */
  *totals(): Generator<{ host: string; received: number; accepted: number; dropped: ReadonlyMap<string, number> }> {
    for (const [host, e] of this.hosts) yield { host, received: e.received, accepted: e.accepted, dropped: e.dropped }
  }

  private entry(host: string): Entry {
    let e = this.hosts.get(host)
    if (!e) {
      e = { received: 0, accepted: 0, dropped: new Map(), discontinuities: 0, lastError: null, lastEventAt: 0 }
      this.hosts.set(host, e)
    }
    return e
  }

  private label(host: string): string {
    if (this.labelled.has(host)) return host
    if (this.labelled.size < this.maxHostLabels) {
      this.labelled.add(host)
      return host
    }
    return 'other'
  }
}
