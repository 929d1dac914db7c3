import { describe, expect, it } from 'vitest'
import { settledGrowth, settledMemory, type SettledMemory } from '../helpers/settled-memory.js'
import { waitUntil } from '../helpers/wait.js'
import { FirehoseClient } from '../helpers/firehose-client.js'
import { firehoseServerPerSuite, range, type FirehoseServer } from './harness.js'

function contiguous(seqs: number[]): boolean {
  for (let i = 1; i < seqs.length; i++) if (seqs[i] !== (seqs[i - 1] as number) + 1) return false
  return true
}

describe('firehose under load (postgres)', () => {
  let relay: FirehoseServer

  firehoseServerPerSuite(
    {
      sequencer: { initialSeq: 1, maxBatchEvents: 100 },
      // A small ring and small replay pages force the log → ring → live path.
      // A stalled consumer is closed a window (1 s here) after it is beyond the lag (slow-consumer.test.ts has the policy).
      firehose: { ringSize: 64, replayPageSize: 50, maxConsumerLag: 500, slowWindowMs: 1_000, highWaterBytes: 64 * 1024, closeGraceMs: 20_000 },
    },
    async (_db, r) => {
      relay = r
      await relay.produce(1000, 200)
    },
  )

  it('a consumer catching up from an old cursor while a producer keeps committing sees a contiguous, duplicate-free stream', async () => {
    let producing = true
    let produced = 0
    const producer = (async () => {
      // Bounded: at most 40 rounds of 50 events.
      for (let round = 0; round < 40 && producing; round++) {
        await relay.produce(50, 200)
        produced += 50
      }
    })()
    await waitUntil(() => produced >= 100, 'producer started', 10_000)
    const c = new FirehoseClient(relay.url, { cursor: 10 })
    await c.opened
    await waitUntil(() => produced >= 600, 'producer progress', 20_000)
    producing = false
    await producer
    const head = relay.sequencer.currentSeq()
    await waitUntil(() => (c.seqs().at(-1) ?? 0) >= head, `consumer reaching ${head}`, 20_000)
    const seqs = c.seqs()
    expect(seqs[0]).toBe(11)
    expect(contiguous(seqs)).toBe(true)
    expect(seqs.at(-1)).toBe(head)
    // And it is live afterwards: new events arrive exactly once.
    const more = await relay.produce(30, 200)
    await waitUntil(() => c.seqs().length >= seqs.length + 30, 'live events after crossover', 20_000)
    // A marker committed last arrives after any duplicate the crossover could have sent.
    const [marker] = await relay.produce(1)
    await waitUntil(() => c.seqs().includes(marker!), `the marker ${marker}`, 20_000)
    expect(c.seqs().slice(seqs.length)).toEqual([...more, marker])
    expect(relay.firehose.consumers().find((x) => x.cursor === 10)?.state).toBe('live')
    c.close()
  })

  it('a stalled consumer gets ConsumerTooSlow while a fast one receives everything, with bounded memory', async () => {
    // Summaries only: the test measures this process's memory, which decoded bodies would fill.
    const fast = new FirehoseClient(relay.url, { summariesOnly: true })
    const slow = new FirehoseClient(relay.url, { summariesOnly: true })
    await Promise.all([fast.opened, slow.opened])
    // Stop reading on the slow client: its kernel buffers fill, then the relay's.
    const slowSocket = (slow.ws as unknown as { _socket: import('node:net').Socket })._socket
    slowSocket.pause()
    const samples: SettledMemory[] = []
    let maxBuffered = 0
    const sampler = setInterval(() => {
      for (const info of relay.firehose.consumers()) maxBuffered = Math.max(maxBuffered, info.bufferedBytes)
    }, 5)
    const start = relay.sequencer.currentSeq()
    // ~27 MB of frames: far more than the socket buffers and the relay's limits.
    const seqs: number[] = []
    for (let i = 0; i < 24; i++) {
      seqs.push(...(await relay.produce(250, 4500)))
      // Measure settled memory (not frames in flight to the fast client); the stalled one's backlog would stay.
      await waitUntil(() => fast.seqs().length >= seqs.length, 'fast consumer keeping up', 10_000)
      // The first rounds grow one-time things (driver buffers, code): measure from there.
      if (i >= 2) samples.push(await settledMemory())
    }
    clearInterval(sampler)
    const heapGrowth = Math.max(...samples.map((m) => m.heap)) - samples[0]!.heap
    // Buffers spike while the database driver holds a batch; a backlog kept for the stalled consumer would not go away.
    const bufferGrowth = settledGrowth(samples.map((m) => m.total))
    expect(seqs).toEqual(range(start + 1, start + 6000))

    await waitUntil(() => fast.seqs().length >= 6000, 'fast consumer', 20_000)
    expect(fast.seqs()).toEqual(seqs)
    const tooSlow = async () => (await relay.registry.getSingleMetric('relay_firehose_consumers_cut_off_total')?.get())?.values.find((v) => v.labels.reason === 'too-slow')?.value
    await waitUntil(async () => (await tooSlow()) !== undefined, 'the stalled consumer cut off', 20_000)
    expect(await tooSlow()).toBe(1)
    // Per socket the relay buffers at most its high-water mark (64 KiB) plus one frame, or one log page (50 frames).
    expect(maxBuffered).toBeLessThan(64 * 1024 + 51 * 4700)
    // 27 MB went through; a relay buffering for the stalled consumer would have kept most of it (~23 MB measured).
    expect(heapGrowth).toBeLessThan(8 * 1024 * 1024)
    expect(bufferGrowth).toBeLessThan(8 * 1024 * 1024)

    // The stalled client, once it reads again, finds the error frame and a 1008 close.
    slowSocket.resume()
    const closed = await slow.closed
    expect(closed).toEqual({ code: 1008, reason: 'ConsumerTooSlow' })
    expect(slow.frames.at(-1)).toEqual({ op: -1, error: 'ConsumerTooSlow' })
    expect(contiguous(slow.seqs())).toBe(true)
    expect(slow.seqs().length).toBeLessThan(6000)
    fast.close()
  })
})
