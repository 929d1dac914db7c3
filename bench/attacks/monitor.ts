/**
 * Watches the relay from the bench process: `GET /xrpc/_health` every
 * `intervalMs` (each with its own timeout, without waiting for the previous
 * one, so a stall shows as many slow polls, not one), and the relay's RSS.
 */
import type { RelayProcess } from './relay-process.js'

export interface HealthPoll {
  /** ms since the monitor started, when the poll was sent */
  t: number
  ms: number
  outcome: 'ok' | 'rate-limited' | 'failed' | 'timeout'
  status?: number
}

export interface HealthSummary {
  polls: number
  ok: number
  /** 429 answers: the relay is alive and throttling this client; not failures. */
  rateLimited: number
  /** non-2xx/429 answers and connection errors */
  failed: number
  timedOut: number
  p50Ms: number
  p99Ms: number
  /** at most about the poll timeout: a poll that times out counts as its timeout */
  maxMs: number
  /** the longest time in the window without an ok (or 429) answer arriving, s */
  longestStallS: number
}

export interface RssSummary {
  startMB: number
  peakMB: number
  endMB: number
}

export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!
}

export class RelayMonitor {
  private readonly t0 = performance.now()
  private readonly polls: HealthPoll[] = []
  private readonly rss: { t: number; mb: number }[] = []
  private readonly timer: NodeJS.Timeout
  private readonly inflight = new Set<Promise<void>>()

  constructor(
    private readonly relay: RelayProcess,
    private readonly intervalMs = 100,
    private readonly timeoutMs = 2000,
  ) {
    this.timer = setInterval(() => this.tick(), intervalMs)
  }

  /** ms since the monitor started (the clock of every poll and sample). */
  now(): number {
    return performance.now() - this.t0
  }

  private tick(): void {
    const t = this.now()
    this.rss.push({ t, mb: this.relay.rssMB() })
    const p = this.poll(t).finally(() => this.inflight.delete(p))
    this.inflight.add(p)
  }

  private async poll(t: number): Promise<void> {
    const start = performance.now()
    let outcome: HealthPoll['outcome'] = 'failed'
    let status: number | undefined
    try {
      const res = await fetch(`${this.relay.url}/xrpc/_health`, { signal: AbortSignal.timeout(this.timeoutMs) })
      await res.arrayBuffer()
      status = res.status
      outcome = res.ok ? 'ok' : res.status === 429 ? 'rate-limited' : 'failed'
    } catch (err) {
      outcome = (err as Error).name === 'TimeoutError' ? 'timeout' : 'failed'
    }
    this.polls.push({ t, ms: performance.now() - start, outcome, ...(status === undefined ? {} : { status }) })
  }

  /** Health polls sent in [fromT, toT). */
  health(fromT: number, toT: number): HealthSummary {
    const ps = this.polls.filter((p) => p.t >= fromT && p.t < toT)
    const ms = ps.map((p) => p.ms).sort((a, b) => a - b)
    const count = (o: HealthPoll['outcome']) => ps.filter((p) => p.outcome === o).length
    const r = (x: number) => Math.round(x)
    // Answer times of the live polls, with the window's ends, to find the longest silence.
    const answers = [fromT, ...ps.filter((p) => p.outcome === 'ok' || p.outcome === 'rate-limited').map((p) => Math.min(toT, p.t + p.ms)), toT].sort((a, b) => a - b)
    let stall = 0
    for (let i = 1; i < answers.length; i++) stall = Math.max(stall, answers[i]! - answers[i - 1]!)
    return {
      polls: ps.length,
      ok: count('ok'),
      rateLimited: count('rate-limited'),
      failed: count('failed'),
      timedOut: count('timeout'),
      p50Ms: r(percentile(ms, 50)),
      p99Ms: r(percentile(ms, 99)),
      maxMs: r(ms[ms.length - 1] ?? NaN),
      longestStallS: Math.round(stall / 100) / 10,
    }
  }

  /** RSS at `fromT`, the peak in [fromT, toT], and at `toT` (nearest samples). */
  rssBetween(fromT: number, toT: number): RssSummary {
    const xs = this.rss.filter((s) => s.t >= fromT && s.t <= toT && Number.isFinite(s.mb))
    return { startMB: xs[0]?.mb ?? NaN, peakMB: Math.max(...xs.map((s) => s.mb)), endMB: xs[xs.length - 1]?.mb ?? NaN }
  }

  /** Stops polling and waits for the polls in flight (each ends within its timeout). */
  async stop(): Promise<void> {
    clearInterval(this.timer)
    await Promise.all([...this.inflight])
  }
}
