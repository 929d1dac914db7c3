/**
 * One busy account beside many quiet ones on the same host: how fast does ingest get through
 * both? Each account's events run in order; before pipelining, an account's next event started
 * only after the previous one's commit, so one account with half the host's events ran at one
 * event per commit round trip and, its events filling the host's queue, held every other
 * account of the host to that pace (docs/benchmarks-network.md, item 3).
 *
 * The real ingest pipeline, sequencer and Postgres (test/ingest/harness.ts: frames pushed as the
 * crawler pushes them, with its backpressure; one verify worker, the relay's host limits). The
 * harness's sequencer batches every 2 ms (the relay's default is 10 ms), which if anything
 * shortens the commit round trip an account waits for.
 *
 *   npx tsx bench/hot-account.bench.ts [hotEvents=1000] [quietAccounts=100] [eventsPerQuiet=10]
 */
import { createHarness, toFrame } from '../test/ingest/harness.js'
import { TestAccount } from '../test/helpers/repo-builder.js'
import type { PdsEvent } from '../test/helpers/frames.js'

const HOT = Number(process.argv[2] ?? 1000)
const QUIET = Number(process.argv[3] ?? 100)
const PER_QUIET = Number(process.argv[4] ?? 10)
const HOST = 'pds.test'
const post = (text: string) => ({ $type: 'app.bsky.feed.post', text, createdAt: new Date().toISOString() })

const h = await createHarness('postgres', { verifyWorkers: 1 })
try {
  await h.pipeline.start()
  const host = await h.addHost(HOST, { accountLimit: 1_000_000 })
  let seq = 0
  const push = async (e: PdsEvent) => {
    seq++
    const wait = h.push(host, toFrame(e, seq), seq)
    if (wait) await wait
  }
  const account = async () => {
    const a = await TestAccount.create({ pdsUrl: `https://${HOST}` })
    h.setIdentity(a.did, { key: a.signingKey.did(), pds: `https://${HOST}`, handle: a.handle })
    for (const e of await a.genesis()) await push(e)
    return a
  }
  const hot = await account()
  const quiet: TestAccount[] = []
  for (let i = 0; i < QUIET; i++) quiet.push(await account())
  await h.pipeline.idle()

  // Built before the clock starts: signing is the host's work, not the relay's.
  const hotEvents: PdsEvent[] = []
  for (let i = 0; i < HOT; i++) hotEvents.push(await hot.createRecord('app.bsky.feed.post', post(`hot ${i}`)))
  const quietEvents: PdsEvent[] = []
  for (let r = 0; r < PER_QUIET; r++) for (const a of quiet) quietEvents.push(await a.createRecord('app.bsky.feed.post', post(`quiet ${r}`)))
  // The host's stream: the busy account's events and the others' alternately, then the rest.
  const stream: PdsEvent[] = []
  for (let i = 0; i < Math.max(hotEvents.length, quietEvents.length); i++) {
    if (i < hotEvents.length) stream.push(hotEvents[i]!)
    if (i < quietEvents.length) stream.push(quietEvents[i]!)
  }

  const quietDids = new Set(quiet.map((a) => a.did))
  let quietDone = 0
  let hotDone = 0
  let quietAt = 0
  const t0 = performance.now()
  const cpu0 = process.cpuUsage()
  h.sequencer.onCommitted((events) => {
    for (const e of events) {
      if (e.did === hot.did) hotDone++
      else if (quietDids.has(e.did) && ++quietDone === quietEvents.length) quietAt = performance.now() - t0
    }
  })
  for (const e of stream) await push(e)
  await h.pipeline.idle()
  const ms = performance.now() - t0
  const cpu = process.cpuUsage(cpu0)
  if (hotDone !== hotEvents.length || quietDone !== quietEvents.length) {
    throw new Error(`committed ${hotDone}/${hotEvents.length} busy and ${quietDone}/${quietEvents.length} quiet events`)
  }
  const rate = (n: number, t: number) => Math.round((n * 1000) / t).toLocaleString('en-US')
  console.log(
    `busy account ${HOT} events + ${QUIET} quiet accounts × ${PER_QUIET}: all ${stream.length} in ${(ms / 1000).toFixed(2)} s ` +
      `(${rate(stream.length, ms)} events/s); the quiet accounts' last event after ${(quietAt / 1000).toFixed(2)} s ` +
      `(${rate(quietEvents.length, quietAt)} of their events/s); process CPU ${(((cpu.user + cpu.system) / stream.length)).toFixed(0)} µs per event`,
  )
} finally {
  await h.close()
}
