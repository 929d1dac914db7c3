/**
 * The admin page's "at a glance" history: per interval (a minute by default),
 * events received and accepted, drops by reason and the busiest hosts, for the
 * last hour. Bounded: `keep` buckets of at most `topHosts` hosts and the drop
 * reasons seen (a fixed vocabulary). Built from HostStats' counters by
 * differencing, so it costs one pass over the hosts per interval and nothing per event.
 */
import type { HostStats } from '../../stats/host-stats.js'

export interface ActivityBucket {
  /** Start of the interval (ISO 8601). */
  at: string
  /** Length in seconds; the last bucket is the interval in progress, so shorter. */
  seconds: number
  received: number
  accepted: number
  dropped: Record<string, number>
  /** The hosts that sent the most events in the interval, busiest first. */
  topHosts: { hostname: string; received: number }[]
}

export interface ActivityView {
  intervalSeconds: number
  buckets: ActivityBucket[]
}

export interface ActivityOptions {
  intervalMs?: number
  keep?: number
  topHosts?: number
}

interface Totals {
  at: number
  received: Map<string, number>
  accepted: number
  dropped: Map<string, number>
}

export class ActivityHistory {
  private readonly intervalMs: number
  private readonly keep: number
  private readonly topHosts: number
  private readonly buckets: ActivityBucket[] = []
  private last: Totals
  private timer: NodeJS.Timeout | undefined

  constructor(
    private readonly stats: HostStats,
    opts: ActivityOptions = {},
  ) {
    this.intervalMs = opts.intervalMs ?? 60_000
    this.keep = opts.keep ?? 60
    this.topHosts = opts.topHosts ?? 5
    this.last = this.totals(Date.now())
  }

  start(): void {
    this.timer ??= setInterval(() => this.sample(), this.intervalMs)
    this.timer.unref()
  }

  stop(): void {
    clearInterval(this.timer)
    this.timer = undefined
  }

  /** Closes the interval in progress into a bucket (the timer calls this; tests may too). */
  sample(now = Date.now()): void {
    const current = this.totals(now)
    this.buckets.push(this.diff(this.last, current))
    if (this.buckets.length > this.keep) this.buckets.splice(0, this.buckets.length - this.keep)
    this.last = current
  }

  view(now = Date.now()): ActivityView {
    return { intervalSeconds: this.intervalMs / 1000, buckets: [...this.buckets, this.diff(this.last, this.totals(now))] }
  }

  private totals(at: number): Totals {
    const received = new Map<string, number>()
    const dropped = new Map<string, number>()
    let accepted = 0
    for (const h of this.stats.totals()) {
      received.set(h.host, h.received)
      accepted += h.accepted
      for (const [reason, n] of h.dropped) dropped.set(reason, (dropped.get(reason) ?? 0) + n)
    }
    return { at, received, accepted, dropped }
  }

  private diff(from: Totals, to: Totals): ActivityBucket {
    let received = 0
    const perHost: { hostname: string; received: number }[] = []
    for (const [hostname, n] of to.received) {
      const delta = n - (from.received.get(hostname) ?? 0)
      received += delta
      if (delta > 0) perHost.push({ hostname, received: delta })
    }
    const dropped: Record<string, number> = {}
    for (const [reason, n] of to.dropped) {
      const delta = n - (from.dropped.get(reason) ?? 0)
      if (delta > 0) dropped[reason] = delta
    }
    perHost.sort((a, b) => b.received - a.received || a.hostname.localeCompare(b.hostname))
    return {
      at: new Date(from.at).toISOString(),
      seconds: Math.max(0.001, (to.at - from.at) / 1000),
      received,
      accepted: to.accepted - from.accepted,
      dropped,
      topHosts: perHost.slice(0, this.topHosts),
    }
  }
}
