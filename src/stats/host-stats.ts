/**
 * Per-host counters of what arrived, what was forwarded and what was dropped
 * and why. One instance is shared by the crawler (transport-level drops) and
 * the ingest pipeline; it feeds Prometheus, getHostStatus and the admin page.
 *
 * Prometheus label cardinality is bounded: the first `maxHostLabels` hosts to
 * send traffic get their own label, the rest are counted under "other"; the
 * in-memory snapshot used by the API keeps every host exactly.
 *
 * The hot path counts into plain maps; the Prometheus counters take those
 * counts when they are collected (a scrape), so an event costs a Map update
 * instead of prom-client's label hashing and validation per counter.
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

/** Between the host label and the second label in an unreported count's key (hostnames never hold it). */
const SEP = '\u0000'

function count(pending: Map<string, number>, key: string): void {
  pending.set(key, (pending.get(key) ?? 0) + 1)
}

/** Adds the unreported counts to `counter` and forgets them. */
function report(pending: Map<string, number>, counter: Counter<string>, second: string | null): void {
  for (const [key, n] of pending) {
    const cut = key.indexOf(SEP)
    const host = key.slice(0, cut)
    counter.inc(second === null ? { host } : { host, [second]: key.slice(cut + 1) }, n)
  }
  pending.clear()
}

export class HostStats {
  private readonly hosts = new Map<string, Entry>()
  private readonly labelled = new Set<string>()
  private readonly receivedTotal: Counter<'host' | 'kind'>
  private readonly acceptedTotal: Counter<'host' | 'kind'>
  private readonly droppedTotal: Counter<'host' | 'reason'>
  private readonly discontinuityTotal: Counter<'host'>
  /** Counts not yet in the Prometheus counters, by metric, keyed by host label and second label. */
  private readonly unreported = { received: new Map<string, number>(), accepted: new Map<string, number>(), dropped: new Map<string, number>(), discontinuities: new Map<string, number>() }

  constructor(
    registry: Registry,
    private readonly maxHostLabels = 50,
  ) {
    const registers = [registry]
    const u = this.unreported
    // Each counter takes its unreported counts when collected (`collect` runs with the counter as `this`).
    this.receivedTotal = new Counter({
      name: 'relay_events_received_total',
      help: 'Upstream events received, by host and type',
      labelNames: ['host', 'kind'],
      registers,
      collect() {
        report(u.received, this, 'kind')
      },
    })
    this.acceptedTotal = new Counter({
      name: 'relay_events_accepted_total',
      help: 'Events accepted and sequenced, by host and type',
      labelNames: ['host', 'kind'],
      registers,
      collect() {
        report(u.accepted, this, 'kind')
      },
    })
    this.droppedTotal = new Counter({
      name: 'relay_events_dropped_total',
      help: 'Upstream events dropped, by host and reason',
      labelNames: ['host', 'reason'],
      registers,
      collect() {
        report(u.dropped, this, 'reason')
      },
    })
    this.discontinuityTotal = new Counter({
      name: 'relay_discontinuities_total',
      help: 'Valid commits whose since/prevData did not match the stored head (forwarded)',
      labelNames: ['host'],
      registers,
      collect() {
        report(u.discontinuities, this, null)
      },
    })
  }

  received(host: string, kind: string): void {
    const e = this.entry(host)
    e.received++
    e.lastEventAt = Date.now()
    count(this.unreported.received, `${this.label(host)}${SEP}${kind}`)
  }

  accepted(host: string, kind: string): void {
    this.entry(host).accepted++
    count(this.unreported.accepted, `${this.label(host)}${SEP}${kind}`)
  }

  dropped(host: string, reason: DropReason): void {
    const e = this.entry(host)
    e.dropped.set(reason, (e.dropped.get(reason) ?? 0) + 1)
    count(this.unreported.dropped, `${this.label(host)}${SEP}${reason}`)
  }

  discontinuity(host: string): void {
    this.entry(host).discontinuities++
    count(this.unreported.discontinuities, `${this.label(host)}${SEP}`)
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
