/**
 * Jetstream subscribers' liveness and the pump's edges, on a real sequencer and event log
 * (Postgres) with real loopback WebSockets: a subscriber that stops answering pings is dropped
 * (`unresponsive`), a requireHello subscriber that never says hello is closed (`no-hello`),
 * ignored v1 messages are counted, a subscriber whose cursor is past what the ring holds is
 * served from the log, and a time cursor does not skip events logged before time_us existed.
 */
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { encode } from '@atcute/cbor'
import { Registry } from 'prom-client'
import WebSocket from 'ws'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { JetLogReader } from '../../src/jetstream/log-reader.js'
import { JETSTREAM_V2_PATH, JetstreamServer } from '../../src/jetstream/server.js'
import { Sequencer } from '../../src/sequencer/sequencer.js'
import type { CommittedEvent, CommittedEventSource } from '../../src/sequencer/types.js'
import { createTestDatabase, type TestDatabase } from '../helpers/db.js'
import { createAccounts, createHost, silentLogger } from '../sequencer/helpers.js'
import { waitUntil } from '../helpers/wait.js'
import { RawJetClient } from './helpers.js'

/** The sequencer, except that handing committed events on can be held back (their seq is already current). */
class HeldSource implements CommittedEventSource {
  held = false
  private readonly queued: CommittedEvent[][] = []
  private readonly listeners: ((events: CommittedEvent[]) => void)[] = []
  constructor(private readonly sequencer: Sequencer) {
    sequencer.onCommitted((events) => {
      if (this.held) this.queued.push(events)
      else for (const l of this.listeners) l(events)
    })
  }
  onCommitted(listener: (events: CommittedEvent[]) => void): void {
    this.listeners.push(listener)
  }
  currentSeq(): number {
    return this.sequencer.currentSeq()
  }
  release(): void {
    this.held = false
    for (const events of this.queued.splice(0)) for (const l of this.listeners) l(events)
  }
}

async function counter(registry: Registry, name: string, labels: Record<string, string>): Promise<number> {
  const metric = await registry.getSingleMetric(name)?.get()
  const v = metric?.values.find((x) => Object.entries(labels).every(([k, want]) => x.labels[k] === want))
  return v?.value ?? 0
}

describe('Jetstream liveness (postgres)', () => {
  let t: TestDatabase
  let sequencer: Sequencer
  let source: HeldSource
  let jetstream: JetstreamServer
  let server: Server
  let base: string
  let accountId: number
  const registry = new Registry()
  let n = 0

  function identity(): Promise<number> {
    const did = 'did:plc:live0'
    return sequencer.submit({ accountId, did, kind: 'identity', t: '#identity', body: encode({ seq: 0, did, time: `2026-12-02T00:00:${String(++n % 60).padStart(2, '0')}.000Z` }) })
  }

  // Pings every second (dropped two seconds after an unanswered one); the hello deadline is far
  // shorter, so the requireHello subscriber is closed before it is ever pinged.
  beforeAll(async () => {
    t = await createTestDatabase('postgres')
    ;[accountId] = (await createAccounts(t.storage, await createHost(t.storage, 'pds.live.example.com'), 1, 'did:plc:live')) as [number]
    sequencer = new Sequencer({ storage: t.storage, initialSeq: 1, maxBatchEvents: 100, maxBatchDelayMs: 2, retentionIntervalMs: 0, logger: silentLogger, registry })
    await sequencer.start()
    await identity()
    source = new HeldSource(sequencer)
    jetstream = new JetstreamServer({ source, log: new JetLogReader(t.storage.db), ringSize: 64, maxLag: 500, pingIntervalMs: 1_000, helloTimeoutMs: 300, logger: silentLogger, registry })
    server = createServer((_req, res) => res.end())
    server.on('upgrade', (req, socket, head) => {
      if (req.url?.startsWith(JETSTREAM_V2_PATH)) jetstream.handleUpgradeV2(req, socket, head)
      else jetstream.handleUpgrade(req, socket, head)
    })
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    base = `ws://127.0.0.1:${(server.address() as AddressInfo).port}`
  }, 60_000)
  afterAll(async () => {
    await jetstream?.close()
    await sequencer?.stop()
    await new Promise<void>((resolve) => server?.close(() => resolve()))
    await t?.cleanup()
  })

  it('a subscriber that stops answering pings is dropped as unresponsive', async () => {
    const c = await RawJetClient.connect(`${base}/subscribe`, { autoPong: false })
    let pings = 0
    c.ws.on('ping', () => pings++)
    await c.waitClosed(15_000)
    expect(pings).toBeGreaterThanOrEqual(1)
    expect(c.closeCode).toBe(1006) // terminated: no close handshake with a peer that answers nothing
    expect(await counter(registry, 'relay_jetstream_cut_off_total', { reason: 'unresponsive' })).toBe(1)
  })

  it('a requireHello subscriber that never says hello is closed (no-hello)', async () => {
    const c = await RawJetClient.connect(`${base}/subscribe?requireHello=true`)
    await c.waitClosed(15_000)
    expect(c.closeCode).toBe(1008)
    expect(c.closeReason).toMatch(/options_update/)
    expect(await counter(registry, 'relay_jetstream_cut_off_total', { reason: 'no-hello' })).toBe(1)
  })

  it('counts non-JSON and unknown v1 messages, and keeps serving the subscriber', async () => {
    const c = await RawJetClient.connect(`${base}/subscribe`)
    c.ws.send('not json')
    c.ws.send(Buffer.from([1, 2, 3]), { binary: true })
    c.send({ type: 'something_else', payload: {} })
    await waitUntil(
      async () =>
        (await counter(registry, 'relay_jetstream_client_messages_ignored_total', { kind: 'not-json' })) === 2 &&
        (await counter(registry, 'relay_jetstream_client_messages_ignored_total', { kind: 'unknown-type' })) === 1,
      'the ignored messages counted',
      10_000,
    )
    const seq = await identity()
    await waitUntil(() => c.events.some((e) => e.kind === 'identity' && e.identity?.seq === seq), 'the next event', 10_000)
    expect(c.closeCode).toBeUndefined()
    await c.close()
  })

  it('a cursor past what the ring holds is served from the log (the pump does not spin)', async () => {
    source.held = true
    const seq = await identity() // committed and current, not yet in Jetstream's ring
    const c = await RawJetClient.connect(`${base}${JETSTREAM_V2_PATH}?cursor=${seq}`, {}, ['xrpc.v1.json'])
    try {
      await waitUntil(() => c.events.some((e) => JSON.stringify(e).includes(`"seq":${seq}`)), `event ${seq} from the log`, 10_000)
    } finally {
      source.release()
    }
    await c.close()
  })

  it('a time cursor starts at events logged before time_us existed instead of skipping them', async () => {
    const reader = new JetLogReader(t.storage.db)
    const seqs = [await identity(), await identity(), await identity()]
    const oldest = (await reader.oldestSeq()) as number
    // Every event up to the second new one is "pre-migration 3": no time_us.
    await t.storage.db.updateTable('event').set({ time_us: null }).where('seq', '<=', seqs[1]!).execute()
    const before = await reader.afterSeqForTime(1)
    expect(before).toEqual({ afterSeq: oldest - 1, clamped: true })
    const rows = await reader.readPage(oldest - 1, 1_000)
    const lastLegacy = rows.find((r) => r.seq === seqs[1])!
    // A cursor among the legacy rows' times: without time_us they cannot be placed, so none is skipped.
    const among = await reader.afterSeqForTime(lastLegacy.timeUs)
    expect(among).toEqual({ afterSeq: oldest - 1, clamped: false })
  })
})
