/** The attack bench's markdown summary. */
import type { AttacksReport, PhaseResult, WindowResult } from '../attacks.bench.js'

const fmt = (x: number | undefined | null) => (x === undefined || x === null || !Number.isFinite(x) ? '–' : String(x))

function row(phase: string, name: string, w: WindowResult): string {
  const h = w.health
  return (
    `| ${phase} | ${name} (${w.seconds} s) | ${w.honest.sent} (${Math.round(w.honest.sent / w.seconds)}/s) / ${w.honest.notForwarded} | ${fmt(w.honest.p50)} / ${fmt(w.honest.p99)} / ${fmt(w.honest.max)} | ` +
    `${h.polls}: ${h.ok} ok, ${h.rateLimited} 429, ${h.failed} failed, ${h.timedOut} timed out | ${fmt(h.p99Ms)} / ${fmt(h.maxMs)} / ${fmt(h.longestStallS)} s | ` +
    `${fmt(w.rss.startMB)} / ${fmt(w.rss.peakMB)} / ${fmt(w.rss.endMB)} |`
  )
}

function entries(m: Record<string, number> | undefined): string {
  const e = Object.entries(m ?? {})
  return e.length ? e.map(([k, v]) => `${k}: ${v}`).join(', ') : 'none'
}

function detail(p: PhaseResult): string[] {
  const out: string[] = []
  if (p.bomb) {
    const b = p.bomb
    const view = b.relayView as { events?: { received?: number; dropped?: Record<string, number> }; connected?: boolean; lastError?: { message?: string } | null; status?: string }
    const closed = b.deliveries.filter((d) => d.relayClosed).length
    out.push(
      `- **bomb**: ${b.deliveries.length} of 10 bombs delivered (${b.deliveries.map((d) => `${d.t}@${d.sentAtS}s conn ${d.connection}${d.handledAfterMs === null ? ' not handled' : ` handled +${d.handledAfterMs} ms`}${d.relayClosed ? ' closed' : ''}`).join('; ')}); ` +
        `the relay opened ${b.host.connections} connection(s) to the hostile host, closed it after ${closed} of them, ${b.host.open} open at the end; ` +
        `relay's count for the host: received ${fmt(view.events?.received)}, dropped ${entries(view.events?.dropped)}, status ${view.status ?? '?'}, ` +
        `last error: ${(view.lastError?.message ?? 'none').slice(0, 160)}`,
    )
  }
  if (p.burst) {
    const b = p.burst
    out.push(
      `- **${p.phase} burst**: ${b.requests} requests in ${b.seconds} s; by status ${entries(b.byStatus)}; 5xx ${b.serverErrors}, 429 ${b.rateLimited}, ` +
        `no answer ${entries(b.errors)}, timed out ${b.timedOut}; XRPC errors ${entries(b.xrpcErrors)}; answer p50/p99/max ${b.p50Ms}/${b.p99Ms}/${b.maxMs} ms; ${b.responseMB} MB read`,
    )
  }
  out.push(`- relay ${p.relayAlive ? 'alive' : '**died**'} at the end, RSS ${fmt(p.rssEndMB)} MB; load average ${p.loadAvgStart.join(' ')} → ${p.loadAvgEnd.join(' ')}`)
  out.push(`- counters: ${entries(p.counters)}`)
  return out
}

export function renderMarkdown(r: AttacksReport): string {
  const lines = [
    `## Attack bench: ${r.label} (${r.commit}, ${r.stamp})`,
    '',
    `Honest fleet offering ${r.honestRate} events/s (a fake host sends only as fast as the relay reads, so a stalled relay lowers "sent"); load average ${r.loadAvgStart.join(' ')} at start, ${r.loadAvgEnd.join(' ')} at end; ${r.totalSeconds} s.`,
    '',
    '| phase | window | honest #commits sent / not forwarded | honest p50 / p99 / max ms | /xrpc/_health polls (2 s timeout) | health p99 / max ms / longest stall | relay RSS start / peak / end MB |',
    '|---|---|---|---|---|---|---|',
  ]
  for (const p of r.phases) lines.push(row(p.phase, 'baseline', p.baseline), row(p.phase, 'attack', p.attack))
  lines.push('')
  for (const p of r.phases) lines.push(...detail(p))
  for (const [phase, message] of Object.entries(r.failures)) lines.push(`- **${phase} FAILED**: ${message}`)
  return lines.join('\n') + '\n'
}
