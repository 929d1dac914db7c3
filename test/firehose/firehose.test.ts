import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createTestDatabase, STORAGE_KINDS, type TestDatabase } from '../helpers/db.js'
import { waitUntil } from '../helpers/wait.js'
import { FirehoseClient } from '../helpers/firehose-client.js'
import { range, startFirehoseServer, type FirehoseServer } from './harness.js'

/**
 * `c` got exactly `expected`: a marker event committed afterwards arrives after anything the
 * firehose sent before it (duplicates, strays), so the stream up to the marker is all of it.
 */
async function expectSeqs(relay: FirehoseServer, c: FirehoseClient, expected: number[], what: string) {
  await waitUntil(() => c.seqs().length >= expected.length, `${what}: ${expected.length} events (got ${c.seqs().length})`, 20_000)
  const [marker] = await relay.produce(1)
  await waitUntil(() => c.seqs().includes(marker!), `${what}: the marker ${marker}`, 20_000)
  expect(c.seqs()).toEqual([...expected, marker])
}

describe.each(STORAGE_KINDS)('firehose cursors on %s', (kind) => {
  let t: TestDatabase
  let relay: FirehoseServer
  let first: number[]

  beforeAll(async () => {
    t = await createTestDatabase(kind)
    relay = await startFirehoseServer(t, { sequencer: { initialSeq: 100 } })
    first = await relay.produce(20)
  })
  afterAll(async () => {
    await relay?.close()
    await t?.cleanup()
  })

  it('without a cursor sends only live events', async () => {
    const c = new FirehoseClient(relay.url)
    await c.opened
    const next = await relay.produce(5)
    await expectSeqs(relay, c, next, 'live')
    expect(c.frames.every((f) => f.op === 1 && f.t === '#commit')).toBe(true)
    c.close()
  })

  it('cursor=0 replays the whole window, then goes live', async () => {
    const c = new FirehoseClient(relay.url, { cursor: 0 })
    await c.opened
    const head = relay.sequencer.currentSeq()
    await expectSeqs(relay, c, range(100, head), 'replay')
    expect(c.frames.some((f) => f.name === 'OutdatedCursor')).toBe(false)
    const next = await relay.produce(3)
    await expectSeqs(relay, c, range(100, next[2]!), 'live after replay')
    c.close()
  })

  it('a cursor inside the window replays seq > cursor', async () => {
    const c = new FirehoseClient(relay.url, { cursor: first[9]! })
    await c.opened
    await expectSeqs(relay, c, range(first[10]!, relay.sequencer.currentSeq()), 'replay from inside')
    c.close()
  })

  it('the last seq as cursor gets nothing old, then live events', async () => {
    const head = relay.sequencer.currentSeq()
    const c = new FirehoseClient(relay.url, { cursor: head })
    await c.opened
    // Nothing old: the first frames it gets are the live ones (expectSeqs checks the whole stream).
    const next = await relay.produce(2)
    await expectSeqs(relay, c, next, 'live after last-seq cursor')
    c.close()
  })

  it('a cursor older than the window gets #info OutdatedCursor then the oldest event', async () => {
    // Cursor 5 is below the oldest retained event (100) by more than one.
    const c = new FirehoseClient(relay.url, { cursor: 5 })
    await c.opened
    const head = relay.sequencer.currentSeq()
    await waitUntil(() => c.seqs().length >= head - 99, 'outdated replay', 10_000)
    expect(c.frames[0]).toEqual({ op: 1, t: '#info', name: 'OutdatedCursor' })
    expect(c.seqs()).toEqual(range(100, head))
    c.close()
  })

  it('a cursor in the future gets FutureCursor and is closed with 1008', async () => {
    const c = new FirehoseClient(relay.url, { cursor: relay.sequencer.currentSeq() + 1000 })
    const closed = await c.closed
    expect(c.frames).toEqual([{ op: -1, error: 'FutureCursor' }])
    expect(closed).toEqual({ code: 1008, reason: 'FutureCursor' })
  })

  it.each(['abc', '-1', '1.5', ''])('cursor=%j is refused with HTTP 400 before the upgrade', async (cursor) => {
    const c = new FirehoseClient(relay.url, { cursor })
    const res = await c.rejected
    expect(res.status).toBe(400)
    expect(JSON.parse(res.body)).toMatchObject({ error: 'InvalidRequest' })
    expect(relay.firehose.consumers().length).toBeLessThanOrEqual(5)
  })

  it('lists consumers and closes them with 1001', async () => {
    const c = new FirehoseClient(relay.url)
    await c.opened
    const mine = relay.firehose.consumers().filter((x) => x.cursor === null && x.state === 'live')
    expect(mine.length).toBeGreaterThanOrEqual(1)
    expect(mine[0]!.remoteAddress).toMatch(/127\.0\.0\.1/)
    const other = await startFirehoseServer(t)
    const c2 = new FirehoseClient(other.url)
    await c2.opened
    await other.firehose.close()
    expect((await c2.closed).code).toBe(1001)
    expect(other.firehose.consumers()).toEqual([])
    await other.sequencer.stop()
    await new Promise<void>((resolve) => other.server.close(() => resolve()))
    c.close()
  })
})

describe.each(STORAGE_KINDS)('firehose retention on %s', (kind) => {
  let t: TestDatabase
  let relay: FirehoseServer

  beforeAll(async () => {
    t = await createTestDatabase(kind)
    relay = await startFirehoseServer(t, { sequencer: { initialSeq: 1, partitionSize: 10, replayWindowMs: 60_000 } })
  })
  afterAll(async () => {
    await relay?.close()
    await t?.cleanup()
  })

  it('drops expired partitions and replays from the new oldest event with OutdatedCursor', async () => {
    const seqs = await relay.produce(35)
    expect(seqs).toEqual(range(1, 35))
    // Age the first three partitions' events (1..29) beyond the window.
    await t.storage.db.updateTable('event').set({ received_at: new Date(Date.now() - 3600_000) }).where('seq', '<', 30).execute()
    const before = (await relay.sequencer.eventLog.partitions()).map((p) => p.start)
    expect(before.slice(0, 4)).toEqual([0, 10, 20, 30])
    const dropped = await relay.sequencer.eventLog.enforceRetention()
    expect(dropped).toBe(3)
    const after = (await relay.sequencer.eventLog.partitions()).map((p) => p.start)
    expect(after[0]).toBe(30)
    expect(await relay.sequencer.eventLog.oldestSeq()).toBe(30)

    const c = new FirehoseClient(relay.url, { cursor: 3 })
    await c.opened
    await waitUntil(() => c.seqs().length >= 6, 'replay after retention', 5000)
    expect(c.frames[0]).toEqual({ op: 1, t: '#info', name: 'OutdatedCursor' })
    expect(c.seqs()).toEqual(range(30, 35))
    c.close()
    // The cursor just below the new oldest is still inside the window: no notice.
    const c2 = new FirehoseClient(relay.url, { cursor: 29 })
    await c2.opened
    await waitUntil(() => c2.seqs().length >= 6, 'replay from 29', 5000)
    expect(c2.frames.some((f) => f.name === 'OutdatedCursor')).toBe(false)
    expect(c2.seqs()).toEqual(range(30, 35))
    c2.close()
  })
})
