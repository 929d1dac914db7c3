/**
 * Splitter against upstreams that misbehave, on loopback: seqs that jump far ahead (refused, the
 * connection ended, resumed from the stored cursor), stored seqs with a gap of many partitions
 * (only the partitions holding them are created), an upstream that accepts the socket and then
 * fails without an event (the fallback takes over), and a fallback that is the upstream written another way.
 */
import { afterAll, describe, expect, it } from 'vitest'
import type { Registry } from 'prom-client'
import { WebSocketServer, type WebSocket } from 'ws'
import { ConfigError, loadConfig } from '../../src/config.js'
import { createLogger } from '../../src/logger.js'
import { startSplitter } from '../../src/splitter/index.js'
import { createPostgresDatabase } from '../helpers/db.js'
import { FakePds } from '../helpers/fake-pds.js'
import { FirehoseClient } from '../helpers/firehose-client.js'
import { encodeInfoFrame, encodeMessageFrame } from '../helpers/frames.js'
import { freePort } from '../helpers/ports.js'
import { waitUntil } from '../helpers/wait.js'
import { startTestSplitter } from './harness.js'

const cleanups: (() => Promise<unknown>)[] = []
afterAll(async () => {
  for (const fn of cleanups.reverse()) await fn().catch(() => undefined)
})

const frame = (seq: number) => encodeMessageFrame('#identity', { did: `did:plc:h${seq}`, seq, time: new Date().toISOString() })
const wsUrl = (port: number) => `ws://127.0.0.1:${port}`
/** RELAY_EVENT_PARTITION_SIZE in these tests, so also the largest seq step accepted. */
const PARTITION = 1000

async function metric(registry: Registry, name: string): Promise<number> {
  return ((await registry.getSingleMetric(name)?.get())?.values ?? []).reduce((sum, v) => sum + v.value, 0)
}

async function fakeRelay(): Promise<FakePds> {
  const pds = await FakePds.start()
  cleanups.push(() => pds.close())
  return pds
}

async function splitterDatabase(): Promise<string> {
  const db = await createPostgresDatabase()
  cleanups.push(() => db.drop())
  return db.url
}

/** A loopback upstream that runs `onConnection` for every subscriber (with the cursor it sent). */
async function scriptedRelay(onConnection: (ws: WebSocket, cursor: number | null) => void): Promise<{ port: number; cursors: (number | null)[] }> {
  const port = await freePort()
  const cursors: (number | null)[] = []
  const wss = new WebSocketServer({ host: '127.0.0.1', port })
  await new Promise<void>((resolve) => wss.once('listening', resolve))
  wss.on('connection', (ws, req) => {
    const raw = new URL(req.url ?? '/', 'http://localhost').searchParams.get('cursor')
    const cursor = raw === null ? null : Number(raw)
    cursors.push(cursor)
    onConnection(ws, cursor)
  })
  cleanups.push(async () => {
    for (const ws of wss.clients) ws.terminate()
    await new Promise((resolve) => wss.close(resolve))
  })
  return { port, cursors }
}

describe('splitter against a hostile upstream', () => {
  it('a seq more than a partition ahead is refused, counted and the connection resumed from the stored cursor', async () => {
    const upstream = await fakeRelay()
    const splitter = await startTestSplitter({ upstream: wsUrl(upstream.port), databaseUrl: await splitterDatabase(), env: { RELAY_EVENT_PARTITION_SIZE: String(PARTITION) } })
    cleanups.push(() => splitter.stop())
    await waitUntil(() => upstream.openConnections === 1, 'the splitter to subscribe')
    const good = [frame(1), frame(2), frame(3), frame(3 + PARTITION)]
    // A gap of up to one partition is an upstream's own business: stored.
    for (const f of good) upstream.emit(f)
    await waitUntil(() => splitter.log.currentSeq() === 3 + PARTITION, 'the events up to the allowed jump stored')
    const bogus = 3 + 2 * PARTITION + 1
    upstream.emit(frame(bogus))
    await waitUntil(() => upstream.stats.cursors.filter((c) => c === 3 + PARTITION).length >= 2, 'the splitter to resume from its cursor (and refuse the jump again)')
    expect(upstream.stats.cursors[0]).toBeNull()
    expect(await metric(splitter.registry, 'relay_splitter_upstream_refused_frames_total')).toBeGreaterThanOrEqual(2)
    expect(splitter.upstream.status().lastError).toContain(`seq ${bogus} jumps more than ${PARTITION}`)
    expect(splitter.log.acceptedSeq()).toBe(3 + PARTITION)

    // The upstream drops the bogus event: the splitter carries on from where it was.
    upstream.setRefuseConnections(true)
    upstream.resetSequence()
    upstream.loadHistory(good)
    upstream.emit(frame(4 + PARTITION))
    upstream.setRefuseConnections(false)
    await waitUntil(() => splitter.log.currentSeq() === 4 + PARTITION, 'the next real event stored')
    const replay = await FirehoseClient.connect(splitter, 0)
    cleanups.push(() => replay.close())
    await replay.waitFor((ev) => ev.length === 5, 'the stored events')
    expect(replay.events.map((e) => e.seq)).toEqual([1, 2, 3, 3 + PARTITION, 4 + PARTITION])
  }, 60_000)

  it('after OutdatedCursor the first event may jump (the upstream could not fill the gap)', async () => {
    const far = 50 * PARTITION
    const upstream = await scriptedRelay((ws, cursor) => {
      if (cursor === null) ws.send(frame(1))
      else {
        ws.send(encodeInfoFrame('OutdatedCursor', 'cursor is older than the replay window'))
        ws.send(frame(far))
      }
      // Then the socket is ended, so the splitter redials with its cursor.
      ws.close(1011, 'going away')
    })
    const splitter = await startTestSplitter({ upstream: wsUrl(upstream.port), databaseUrl: await splitterDatabase(), env: { RELAY_EVENT_PARTITION_SIZE: String(PARTITION) } })
    cleanups.push(() => splitter.stop())
    await waitUntil(() => splitter.log.currentSeq() === far, 'the event after OutdatedCursor stored')
    expect(upstream.cursors.slice(0, 2)).toEqual([null, 1])
    expect(await metric(splitter.registry, 'relay_splitter_upstream_refused_frames_total')).toBe(0)
  }, 60_000)

  it('stored seqs many partitions apart create only the partitions that hold them', async () => {
    const upstream = await fakeRelay()
    const splitter = await startTestSplitter({ upstream: wsUrl(upstream.port), databaseUrl: await splitterDatabase(), env: { RELAY_EVENT_PARTITION_SIZE: String(PARTITION) } })
    cleanups.push(() => splitter.stop())
    await waitUntil(() => upstream.openConnections === 1, 'the splitter to subscribe')
    // As the first events of two connections would arrive (a live one may start anywhere): the whole
    // range would be a billion partitions.
    const far = 1_000_000_000_000
    for (const seq of [5, far]) splitter.log.append({ seq, t: '#identity', code: 0, did: `did:plc:h${seq}`, frame: frame(seq) })
    await waitUntil(() => splitter.log.currentSeq() === far, 'both events committed')
    expect((await splitter.log.eventLog.partitions()).map((p) => p.start)).toEqual([0, far])
    const replay = await FirehoseClient.connect(splitter, 0)
    cleanups.push(() => replay.close())
    await replay.waitFor((ev) => ev.length === 2, 'both events')
    expect(replay.events.map((e) => e.seq)).toEqual([5, far])
  }, 60_000)

  it('an upstream that accepts the socket and fails without an event is failed over like one that refuses', async () => {
    let accepted = 0
    const primary = await scriptedRelay((ws) => {
      accepted++
      ws.close(1011, 'overloaded')
    })
    const fallback = await fakeRelay()
    const splitter = await startTestSplitter({ upstream: wsUrl(primary.port), fallback: wsUrl(fallback.port), databaseUrl: await splitterDatabase(), env: { RELAY_SPLITTER_FAILOVER_AFTER: '300ms' } })
    cleanups.push(() => splitter.stop())
    await waitUntil(() => fallback.openConnections === 1, 'the splitter to switch to the fallback', 30_000)
    expect(accepted).toBeGreaterThanOrEqual(2)
    expect(splitter.upstream.status().role).toBe('fallback')
    fallback.emit(frame(7))
    await waitUntil(() => splitter.log.currentSeq() === 7, 'the fallback event stored')
  }, 60_000)

  it('a fallback that is the upstream written another way is refused at start-up', async () => {
    const config = loadConfig({
      DATABASE_URL: 'postgres://postgres@127.0.0.1:5432/unused',
      RELAY_SPLITTER_UPSTREAM: 'http://127.0.0.1:4999',
      RELAY_SPLITTER_FALLBACK: 'ws://127.0.0.1:4999/',
    })
    await expect(startSplitter(config, createLogger('silent'))).rejects.toThrow(ConfigError)
  })
})
