/**
 * The pull-model cut-off (firehose/slow-reader.ts) over real WebSockets on loopback: a consumer
 * that was live and falls beyond RELAY_CONSUMER_MAX_LAG is closed only if it also reads below
 * RELAY_CONSUMER_MIN_RATE for RELAY_CONSUMER_SLOW_WINDOW. The read rate is driven by the test
 * client (pausing and resuming its socket), with a floor far below it, so nothing here depends
 * on the machine's speed; every wait has a deadline.
 */
import { describe, expect, it } from 'vitest'
import { FirehoseClient } from '../helpers/firehose-client.js'
import { waitUntil } from '../helpers/wait.js'
import { firehoseServerPerSuite, range, type FirehoseServer } from './harness.js'

const MAX_LAG = 100
const MIN_RATE = 5 // events/s; the paced client reads ~10 events per ~100 ms
// Well over the time the loopback buffers (megabytes) take to show the relay the reader's progress.
const WINDOW_MS = 5_000
const FRAME_PADDING = 20_000 // large frames fill the loopback buffers with few events

/** ws's own pause: it stops reading the socket, and ws does not resume it behind the test's back. */
function pause(c: FirehoseClient): void {
  c.ws.pause()
}
function resume(c: FirehoseClient): void {
  c.ws.resume()
}

describe('firehose slow consumers (postgres)', () => {
  let relay: FirehoseServer

  firehoseServerPerSuite(
    {
      sequencer: { initialSeq: 1, maxBatchEvents: 100 },
      // A small ring and high-water mark: a consumer behind reads from the log, paced on its socket.
      firehose: { ringSize: 64, replayPageSize: 50, maxConsumerLag: MAX_LAG, minConsumerRate: MIN_RATE, slowWindowMs: WINDOW_MS, highWaterBytes: 64 * 1024, closeGraceMs: 60_000 },
    },
    async (_db, r) => {
      relay = r
    },
  )

  const tooSlowCount = async (): Promise<number> => {
    const cut = await relay.registry.getSingleMetric('relay_firehose_consumers_cut_off_total')?.get()
    return cut?.values.find((v) => v.labels.reason === 'too-slow')?.value ?? 0
  }

  /** Connects live, stops reading, and commits until the relay has it catching up well beyond the lag. */
  async function liveThenStalledBeyond(lag: number): Promise<{ client: FirehoseClient; id: number; start: number; produced: number[] }> {
    const earlier = new Set(relay.firehose.consumers().map((c) => c.id))
    const start = relay.sequencer.currentSeq()
    const client = new FirehoseClient(relay.url, { summariesOnly: true })
    await client.opened
    let id = -1
    await waitUntil(() => {
      const ours = relay.firehose.consumers().find((c) => !earlier.has(c.id))
      id = ours?.id ?? -1
      return ours?.state === 'live'
    }, 'consumer live', 10_000)
    pause(client)
    const produced: number[] = []
    // The kernel's loopback buffers take some megabytes first: commit until the relay sees it behind.
    for (let round = 0; round < 100; round++) {
      produced.push(...(await relay.produce(50, FRAME_PADDING)))
      const info = relay.firehose.consumers().find((c) => c.id === id)
      if (info !== undefined && info.state === 'catchup' && info.lag > lag) break
    }
    const info = relay.firehose.consumers().find((c) => c.id === id)
    expect(info?.state).toBe('catchup')
    expect(info?.lag).toBeGreaterThan(lag)
    return { client, id, start, produced }
  }

  it('a consumer beyond the lag that keeps reading above the floor rate is not cut off and receives every event in order', async () => {
    const cutBefore = await tooSlowCount()
    const { client, id, start, produced } = await liveThenStalledBeyond(10 * MAX_LAG)
    const head = relay.sequencer.currentSeq()
    expect(produced.at(-1)).toBe(head)
    // Read 100 events per sweep of the relay's slow-reader check (one a second): ~100/s, far above
    // the floor, and slow enough to stay beyond the lag for over a window. Paced on the relay's own
    // judging, not on a timer of the test's.
    let budget = 0
    const paced = () => {
      if (--budget <= 0) pause(client)
    }
    client.ws.on('message', paced)
    let beyondLagSince: number | undefined
    let longestBeyondLagMs = 0
    const deadline = Date.now() + 120_000
    while ((client.seqs().at(-1) ?? 0) < head) {
      if (Date.now() > deadline) throw new Error(`paced consumer did not reach ${head}: at ${client.seqs().at(-1)}`)
      const info = relay.firehose.consumers().find((c) => c.id === id)
      expect(info?.state).not.toBe('closed')
      if (info !== undefined && info.state === 'catchup' && info.lag > MAX_LAG) {
        beyondLagSince ??= Date.now()
        longestBeyondLagMs = Math.max(longestBeyondLagMs, Date.now() - beyondLagSince)
      } else beyondLagSince = undefined
      budget = 100
      const sweep = relay.firehose.slowReaderSweeps
      resume(client)
      await waitUntil(() => client.ws.isPaused || (client.seqs().at(-1) ?? 0) >= head, 'the next few events', 20_000)
      await waitUntil(() => relay.firehose.slowReaderSweeps > sweep, 'the next slow-reader sweep', 20_000)
    }
    client.ws.off('message', paced)
    resume(client)
    // It was judged: beyond the lag, catching up, for more than a window (the old policy closed it at once).
    expect(longestBeyondLagMs).toBeGreaterThan(WINDOW_MS)
    expect(client.seqs()).toEqual(range(start + 1, head))
    expect(client.errors).toEqual([])
    // And it is live again: the next event arrives.
    const [marker] = await relay.produce(1)
    await waitUntil(() => client.seqs().at(-1) === marker, `the marker ${marker}`, 20_000)
    expect(relay.firehose.consumers().find((c) => c.id === id)?.state).toBe('live')
    expect(await tooSlowCount()).toBe(cutBefore)
    client.close()
  }, 180_000)

  it('a consumer beyond the lag that stops reading is closed with ConsumerTooSlow after the window, holding at most its high-water mark', async () => {
    const cutBefore = await tooSlowCount()
    const stalledAt = Date.now()
    const { client, id, start } = await liveThenStalledBeyond(MAX_LAG)
    let maxBuffered = 0
    await waitUntil(
      async () => {
        for (const c of relay.firehose.consumers()) if (c.id === id) maxBuffered = Math.max(maxBuffered, c.bufferedBytes)
        return (await tooSlowCount()) > cutBefore
      },
      'the stalled consumer cut off',
      30_000,
    )
    // Not before a whole window of reading nothing while beyond the lag.
    expect(Date.now() - stalledAt).toBeGreaterThanOrEqual(WINDOW_MS)
    expect(await tooSlowCount()).toBe(cutBefore + 1)
    // The high-water mark plus one log page (50 frames of ~20 KB).
    expect(maxBuffered).toBeLessThan(64 * 1024 + 51 * (FRAME_PADDING + 400))
    resume(client)
    const closed = await client.closed
    expect(closed).toEqual({ code: 1008, reason: 'ConsumerTooSlow' })
    expect(client.frames.at(-1)).toEqual({ op: -1, error: 'ConsumerTooSlow' })
    const seqs = client.seqs()
    expect(seqs).toEqual(range(start + 1, start + seqs.length))
  }, 180_000)
})
