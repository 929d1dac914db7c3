/** Number formats, target verdicts and the ingest, verify-worker and latency sections of the report (report.ts). */
import type { CorpusManifest } from '../corpus/store.js'
import type { IngestResult, WorkersResult } from './ingest.js'
import type { LatencyLevel, LatencyPhase, LatencyResult } from './latency.js'
import type { FloorPhase } from './phases.js'

export const int = (x: number) => (Number.isFinite(x) ? Math.round(x).toLocaleString('en-US') : 'n/a')
export const f1 = (x: number) => (Number.isFinite(x) ? x.toFixed(1) : 'n/a')
export const f2 = (x: number) => (Number.isFinite(x) ? x.toFixed(2) : 'n/a')
export const pct = (x: number) => (Number.isFinite(x) ? `${(x * 100).toFixed(1)} %` : '')
export const load = (l?: [number, number, number]) => (l ? l.join(' / ') : 'n/a')

/** "met" or how far off, for a higher-is-better (or lower-is-better) target. */
export function target(value: number | undefined, goal: number, higherIsBetter: boolean): string {
  if (value === undefined || !Number.isFinite(value)) return 'not measured'
  const ok = higherIsBetter ? value >= goal : value <= goal
  if (ok) return 'met'
  const off = higherIsBetter ? (goal - value) / goal : (value - goal) / goal
  return `**missed by ${(off * 100).toFixed(0)} %**`
}

/** Drops the corpus intends: every #sync at account creation/activation repeats the current rev (dropped as a duplicate, DESIGN §6). */
export function dropsExpected(d: Record<string, number>, corpus: CorpusManifest): boolean {
  return Object.keys(d).every((k) => k === 'duplicate') && (d.duplicate ?? 0) <= corpus.totals.events.sync
}

export function dropVerdict(d: Record<string, number>, corpus: CorpusManifest): string {
  const syncs = corpus.totals.events.sync
  if (dropsExpected(d, corpus)) return `${droppedText(d)} — expected (the corpus has ${int(syncs)} \`#sync\` events, each repeating its account's current rev); **no unexpected drops**`
  return `${droppedText(d)} — **unexpected** (corpus #sync: ${int(syncs)})`
}

export function droppedText(d: Record<string, number>): string {
  const entries = Object.entries(d)
  return entries.length === 0 ? 'none' : entries.map(([k, v]) => `${k} ${v}`).join(', ')
}

const workersText = (n: number | undefined) => (n === undefined ? '' : n === 0 ? '; verification inline (0 verify workers)' : `; ${n} verify worker${n === 1 ? '' : 's'}`)

export function ingestSection(L: string[], title: string, x: IngestResult, ctx: { corpus: CorpusManifest; cores: number; floor?: FloorPhase }): void {
  const s = x.steady
  L.push(`### ${title}`)
  L.push('')
  L.push(`Load average at start: ${load(x.loadAvg)}${workersText(x.verifyWorkers)}.`)
  L.push('')
  L.push('| | |')
  L.push('|---|---|')
  L.push(`| steady window | ${f1(s.fromS)}–${f1(s.toS)} s: ${int(s.events)} events, **${int(s.eventsPerSec)} events/s** accepted at the sequencer |`)
  L.push(`| whole run | ${int(x.accepted)} accepted, ${int(x.dropped)} dropped of ${int(x.totalFrames)} frames in ${f1(x.seconds)} s (${int(x.overallEventsPerSec)} events/s from first commit to last)${x.completed ? '' : ' — **stopped at the deadline before the corpus was done**'} |`)
  L.push(`| drops | ${x.completed ? dropVerdict(x.droppedByReason, ctx.corpus) : droppedText(x.droppedByReason)}${x.lastErrors.length ? `; last errors: ${x.lastErrors.map((e) => '`' + e.slice(0, 160) + '`').join('; ')}` : ''} |`)
  L.push(`| events in the log | ${int(x.storedEvents)} |`)
  L.push(`| PLC | ${int(x.internals.plcResolutions)} resolutions; ${f1(x.internals.plcLimitDelaySeconds)} s of rate-limit delay in total (${x.plcLimit === 'lifted' ? 'limit lifted' : 'default limit'}) |`)
  L.push(
    `| CPU in the window | relay process ${f2(s.relayCores)} cores (main thread ${f2(s.mainCores ?? NaN)}, event-loop utilisation ${pct(s.elu ?? NaN)})${s.pgCores !== undefined ? `, its Postgres backends ${f2(s.pgCores)} cores` : ''}; whole machine ${f2(s.machineCores)} of ${ctx.cores} cores busy (relay + database + fake hosts + other users) |`,
  )
  L.push(
    `| CPU per accepted event | relay process ${f1(s.relayUsPerEvent ?? NaN)} µs${s.pgUsPerEvent !== undefined ? ` + Postgres backends ${f1(s.pgUsPerEvent)} µs = ${f1((s.relayUsPerEvent ?? NaN) + s.pgUsPerEvent)} µs` : ''} (floor: ${ctx.floor ? f1(ctx.floor.usPerEvent) + ' µs' : 'n/a'}) |`,
  )
  L.push(
    `| of which the relay's main thread | ${f1(s.mainUsPerEvent ?? NaN)} µs CPU per event${ctx.floor ? ` (${f2((s.mainUsPerEvent ?? NaN) / ctx.floor.usPerEvent)} × the floor)` : ''}; event-loop utilisation × window ÷ events ${f1(s.eluUsPerEvent ?? NaN)} µs; the other threads (verify workers, libuv pool, V8 helpers) ${f1(s.otherThreadsUsPerEvent ?? NaN)} µs |`,
  )
  L.push(`| RSS | ${int(x.startRssMB)} MB at start, peak ${int(x.peakRssMB)} MB |`)
  const i = x.internals
  L.push(
    `| inside the relay (whole run) | batch commit ${f1(i.commitMs)} ms for ${f1(i.batchEvents)} events on average; verify ${f2(i.verifyMs)} ms per event (wall, includes waiting for the event loop); on average ${f1(i.avgInFlight)} events processing, ${f1(i.avgQueued)} queued in ingest, ${f1(i.avgSequencerQueued)} waiting in the sequencer |`,
  )
  if (x.profileWindow) L.push(`| profiled window | ${f1(x.profileWindow.fromS)}–${f1(x.profileWindow.toS)} s at ${int(x.profileWindow.eventsPerSec)} events/s (profiler on) |`)
  L.push('')
}

export function workersSection(L: string[], w: WorkersResult, floor: FloorPhase | undefined, corpus: CorpusManifest): void {
  L.push('### Scaling with verify workers (Postgres)')
  L.push('')
  L.push(
    `Phase (a) on Postgres again, once per \`RELAY_VERIFY_WORKERS\` from 0 (verification inline on the main thread) to cores + 1 = ${w.runs.length - 1} (${w.cores} cores here), each on a fresh relay and database, same steady window (10–90 % of the corpus). ` +
      'Main thread = CPU of the relay process\'s main thread alone (`/proc/self/task/<pid>/schedstat`); other threads = process − main thread.',
  )
  L.push('')
  L.push('| verify workers | events/s | ÷ floor rate | relay µs/event (÷ floor) | main thread µs/event (÷ floor) | other threads µs/event | Postgres µs/event | relay cores | main-thread cores (event loop busy) | machine cores busy | load at start | drops |')
  L.push('|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|')
  for (const x of w.runs) {
    const s = x.steady
    const fl = floor?.usPerEvent ?? NaN
    L.push(
      `| ${x.verifyWorkers ?? '?'} | ${int(s.eventsPerSec)} | ${floor ? f2(s.eventsPerSec / floor.eventsPerCpuSecond) : 'n/a'} | ${f1(s.relayUsPerEvent ?? NaN)} (${f2((s.relayUsPerEvent ?? NaN) / fl)} ×) | ${f1(s.mainUsPerEvent ?? NaN)} (${f2((s.mainUsPerEvent ?? NaN) / fl)} ×) | ${f1(s.otherThreadsUsPerEvent ?? NaN)} | ${f1(s.pgUsPerEvent ?? NaN)} | ${f2(s.relayCores)} | ${f2(s.mainCores ?? NaN)} (${pct(s.elu ?? NaN)}) | ${f2(s.machineCores)} | ${load(x.loadAvg)} | ${x.completed ? (dropsExpected(x.droppedByReason, corpus) ? 'expected only' : `**${droppedText(x.droppedByReason)}**`) : '**deadline hit**'} |`,
    )
  }
  L.push('')
}

/** The p99 target of a latency level: ≤ 100 ms at 50 % of the maximum, ≤ 250 ms at 80 %. */
export function latencyGoal(level: LatencyLevel): number | undefined {
  return level.fraction === 0.5 ? 100 : level.fraction === 0.8 ? 250 : undefined
}

export function latencyLevelName(level: LatencyLevel, phase: LatencyPhase): string {
  if (level.fraction === undefined) return `${int(level.rate)} events/s (fixed: no maximum ingest rate in this run)`
  return `${level.fraction * 100} % of max (${int(level.rate)} of ${int(phase.maxRate ?? NaN)} events/s${phase.source === 'flag' ? ', --max-rate' : ''})`
}

export const WINDOW_NAMES = { burst: 'over the new-account burst', steady: 'in steady state' } as const

export function latencySection(L: string[], title: string, x: LatencyResult): void {
  const from = x.warmMs !== undefined && x.windowMs !== undefined ? `, measured ${f1(x.warmMs / 1000)}–${f1((x.warmMs + x.windowMs) / 1000)} s after the hosts were added` : ''
  L.push(`### ${title}${from}`)
  L.push('')
  L.push(`Load average at start: ${load(x.loadAvg)}.`)
  L.push('')
  L.push('| p50 | p90 | p99 | max | mean | events measured | accepted in window |')
  L.push('|---:|---:|---:|---:|---:|---:|---:|')
  L.push(`| ${f1(x.p50)} ms | ${f1(x.p90)} ms | ${f1(x.p99)} ms | ${f1(x.max)} ms | ${f1(x.mean)} ms | ${int(x.count)} | ${int(x.window.eventsPerSec)} events/s |`)
  L.push('')
  if (x.existingAccounts && x.firstEventOfAccount) {
    L.push(
      `Split: events of accounts already seen: p50 ${f1(x.existingAccounts.p50)} ms, p99 ${f1(x.existingAccounts.p99)} ms (${int(x.existingAccounts.count)}); ` +
        `the first \`#commit\`/\`#sync\` of an account (it waits behind the account's \`#identity\`: PLC resolution, handle check, account creation): p50 ${f1(x.firstEventOfAccount.p50)} ms, p99 ${f1(x.firstEventOfAccount.p99)} ms (${int(x.firstEventOfAccount.count)}).`,
    )
    L.push('')
  }
  L.push(
    `Probe (whole run so far): ${int(x.probe.received)} frames received, ${int(x.probe.matched)} matched, ${int(x.probe.unmatched)} unmatched, ${x.probe.errors.length ? x.probe.errors.join('; ') : 'no errors'}. Drops: ${droppedText(x.dropped)}${x.lastErrors.length ? ` (last errors: ${x.lastErrors.map((e) => '`' + e.slice(0, 160) + '`').join('; ')})` : ''}.`,
  )
  L.push('')
}

export function latencySections(L: string[], p: LatencyPhase): void {
  L.push('## (b) Latency, host send → consumer receive')
  L.push('')
  L.push(
    'The fake hosts (child process) stamp every frame when they hand it to the socket; a `ws` consumer of the relay firehose in the same child matches what arrives by (DID, rev), so both ends use one clock. `#identity`/`#account` are not matched (no rev). ' +
      'One fresh relay and database per offered rate; on that one stream two windows, as fractions of the time the corpus takes at that rate: 15–55 % (the tail of the corpus\'s new-account burst: its accounts are created in the first seconds) and 55–90 % (steady state, every account exists). ' +
      (p.source === 'ingest'
        ? `Offered rates are 50 % and 80 % of phase (a)'s steady Postgres rate in this run, ${int(p.maxRate ?? NaN)} events/s (frames offered per second vs events accepted per second; the corpus's duplicate \`#sync\` frames are ~4 %).`
        : p.source === 'flag'
          ? `Offered rates are 50 % and 80 % of ${int(p.maxRate ?? NaN)} events/s given with \`--max-rate\` (phase (a) was not in this run).`
          : '**No maximum ingest rate in this run** (phase (a) not run or failed, and no `--max-rate`): measured at a fixed 2,000 events/s instead, so the 50 % / 80 % targets are not evaluated.'),
  )
  L.push('')
  for (const level of p.levels) {
    for (const w of ['burst', 'steady'] as const) {
      const x = level[w]
      if (x) latencySection(L, `${latencyLevelName(level, p)}, ${WINDOW_NAMES[w]}`, x)
    }
  }
}
