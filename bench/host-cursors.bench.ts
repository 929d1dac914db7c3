/**
 * Per-event cost of upstream tickets (src/sequencer/host-cursors.ts): open a
 * ticket per event and end it (dropped, or submitted → committed), with 32
 * events of one host in flight, as ingest runs them. Run: npx tsx bench/host-cursors.bench.ts
 */
import { HostCursorTracker } from '../src/sequencer/host-cursors.js'

const N = 2_000_000
const IN_FLIGHT = 32

function run(label: string, commit: boolean): void {
  const t = new HostCursorTracker()
  const live: ReturnType<HostCursorTracker['open']>[] = []
  const started = process.hrtime.bigint()
  for (let seq = 1; seq <= N; seq++) {
    live.push(t.open(1, seq))
    if (live.length === IN_FLIGHT) {
      // End them out of order (every other one first), like concurrent DIDs.
      for (let i = 1; i < live.length; i += 2) end(t, live[i]!, commit)
      for (let i = 0; i < live.length; i += 2) end(t, live[i]!, commit)
      live.length = 0
    }
  }
  const ns = Number(process.hrtime.bigint() - started) / N
  if (t.cursor(1) !== N) throw new Error(`cursor ${t.cursor(1)}`)
  console.log(`${label}: ${ns.toFixed(0)} ns/event`)
}

function end(t: HostCursorTracker, ticket: ReturnType<HostCursorTracker['open']>, commit: boolean): void {
  if (!commit) return ticket.drop('duplicate')
  t.submitted(ticket)
  t.committing(ticket)
  t.committed(ticket)
}

for (let round = 0; round < 3; round++) {
  run('open + drop', false)
  run('open + submit + commit', true)
}
