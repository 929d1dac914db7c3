/**
 * A consumer that keeps reading is never cut off for being behind, so retention can drop
 * events it has not read yet. It must be told (#info OutdatedCursor, as a cursor older than
 * the window is), then go on from the oldest retained event in order; a gap left by a
 * takedown is no such notice. The reader is stalled by the test client (pausing its socket)
 * and the relay's position is read back, so nothing depends on the machine's speed.
 */
import { describe, expect, it } from 'vitest'
import type { TestDatabase } from '../helpers/db.js'
import { FirehoseClient } from '../helpers/firehose-client.js'
import { waitUntil } from '../helpers/wait.js'
import { firehoseServerPerSuite, range, type FirehoseServer } from './harness.js'

const PARTITION = 10
const FRAME_PADDING = 100_000 // 200 frames of ~100 KB: far more than the loopback buffers hold
const EVENTS = 200

describe('retention while a consumer reads the log (postgres)', () => {
  let t: TestDatabase
  let relay: FirehoseServer

  firehoseServerPerSuite(
    {
      sequencer: { initialSeq: 1, partitionSize: PARTITION, replayWindowMs: 60_000 },
      // A tiny ring: a consumer behind reads the log, a page at a time, paced on its socket.
      firehose: { ringSize: 4, replayPageSize: 5, highWaterBytes: 64 * 1024, maxConsumerLag: 1_000_000 },
    },
    async (db, r) => {
      t = db
      relay = r
    },
  )

  it('tells a reader that fell out of the window, then continues from the oldest retained event', async () => {
    const produced = await relay.produce(EVENTS, FRAME_PADDING)
    expect(produced).toEqual(range(1, EVENTS))
    const client = new FirehoseClient(relay.url, { cursor: 0, summariesOnly: true })
    await client.opened
    client.ws.pause()
    // The relay fills the loopback buffers, then waits for this socket to drain, somewhere early in the log.
    let position = 0
    await waitUntil(() => {
      const info = relay.firehose.consumers()[0]
      position = EVENTS - (info?.lag ?? EVENTS)
      return info !== undefined && info.state === 'catchup' && info.bufferedBytes > 64 * 1024
    }, 'the relay holding back for the stalled reader', 20_000)
    const keepFrom = Math.ceil((position + 2 * PARTITION) / PARTITION) * PARTITION
    expect(keepFrom).toBeLessThan(EVENTS - PARTITION) // the test needs events it has not reached to expire
    // Everything below keepFrom expires; the reader is (at least a partition) short of it.
    await t.storage.db.updateTable('event').set({ received_at: new Date(Date.now() - 3_600_000) }).where('seq', '<', keepFrom).execute()
    expect(await relay.sequencer.eventLog.enforceRetention()).toBeGreaterThan(0)
    expect(await relay.sequencer.eventLog.oldestSeq()).toBe(keepFrom)

    client.ws.resume()
    await waitUntil(() => client.seqs().at(-1) === EVENTS, 'the reader reaching the head', 30_000)
    const notices = client.frames.map((f, i) => ({ f, i })).filter(({ f }) => f.name === 'OutdatedCursor')
    expect(notices).toHaveLength(1)
    const seqs = client.seqs()
    const before = client.frames.slice(0, notices[0]!.i).filter((f) => f.seq !== undefined).map((f) => f.seq as number)
    const after = client.frames.slice(notices[0]!.i + 1).filter((f) => f.seq !== undefined).map((f) => f.seq as number)
    // What it read before is the window's start in order; after the notice, the retained events in order.
    expect(before).toEqual(range(1, before.length))
    expect(before.length).toBeLessThan(keepFrom - 1)
    expect(after).toEqual(range(keepFrom, EVENTS))
    expect(seqs).toHaveLength(before.length + after.length)
    client.close()
  })

  it('gives no notice for a gap a takedown left', async () => {
    const head = relay.sequencer.currentSeq()
    const seqs = await relay.produce(12)
    // The events of one account (every fourth) leave the log, as a takedown removes them.
    relay.firehose.forgetAccount(relay.accounts[0]!)
    const removed = await relay.sequencer.eventLog.removeAccountEvents(relay.accounts[0]!)
    expect(removed).toBeGreaterThanOrEqual(3) // the 3 of these 12, and what the first test left of it
    const client = new FirehoseClient(relay.url, { cursor: head, summariesOnly: true })
    await client.opened
    await waitUntil(() => client.seqs().length >= 9, 'the replay after the takedown', 10_000)
    expect(client.frames.some((f) => f.name === 'OutdatedCursor')).toBe(false)
    expect(client.seqs()).toEqual(seqs.filter((s) => s > head).filter((_, i) => i % 4 !== 0))
    client.close()
  })
})
