/**
 * Restart: the relay is stopped while hosts keep streaming and a new one is
 * started on the same database. Hosts are resubscribed from their stored
 * cursors and the output loses and repeats nothing: per account it is exactly
 * what the hosts published, and the new relay's seqs continue above the old.
 */
import pg from 'pg'
import { afterAll, describe, expect, it } from 'vitest'
import type { Relay } from '../../src/relay.js'
import { createPostgresDatabase } from '../helpers/db.js'
import { LoopbackPlc } from '../helpers/loopback-plc.js'
import { Ledger, post, startHost, streamCommits, type TestHost } from './accounts.js'
import { healthStatus, hostStatus, startTestRelay } from '../helpers/relay.js'
import { FirehoseClient, type FirehoseEvent } from '../helpers/firehose-client.js'
import { waitUntil } from '../helpers/wait.js'

const cleanups: (() => Promise<unknown>)[] = []
afterAll(async () => {
  for (const fn of cleanups.reverse()) await fn().catch(() => undefined)
})

async function storedCursors(url: string): Promise<Map<string, number>> {
  const client = new pg.Client({ connectionString: url })
  await client.connect()
  try {
    const { rows } = await client.query<{ hostname: string; cursor: string }>('select hostname, cursor from host')
    return new Map(rows.map((r) => [r.hostname, Number(r.cursor)]))
  } finally {
    await client.end()
  }
}

/** A new database and PLC for one test (both cleaned up after the file), with an empty ledger. */
async function freshWorld() {
  const db = await createPostgresDatabase()
  cleanups.push(() => db.drop())
  const plc = await LoopbackPlc.start()
  cleanups.push(() => plc.close())
  return { db, plc, handles: new Map<string, string>(), ledger: new Ledger() }
}

describe('relay restart on the same database', () => {
  it('resubscribes from stored cursors; nothing lost or duplicated; seqs continue', async () => {
    const { db, plc, handles, ledger } = await freshWorld()

    let relay: Relay = await startTestRelay({ databaseUrl: db.url, plcUrl: plc.url, handles })
    cleanups.push(() => relay.stop())
    const readerA = await FirehoseClient.connect(relay, 0)
    cleanups.push(() => readerA.close())
    const hosts: TestHost[] = []
    for (let i = 0; i < 2; i++) {
      const h = await startHost(relay, plc, handles, ledger, { accounts: 2 })
      cleanups.push(() => h.pds.close())
      hosts.push(h)
    }
    await ledger.expectAllForwarded(readerA)

    // Both hosts keep streaming through the stop and the restart.
    const streams = hosts.map((h) => streamCommits(h, ledger, { intervalMs: 15, min: 40, mixed: true }))
    await readerA.waitFor((ev) => ev.length >= 20, 'some streamed events before the stop')
    await relay.stop()
    const lastA = readerA.events.at(-1)!.seq
    const cursors = await storedCursors(db.url)
    // Written while the relay is down: only the stored cursor can bring these back.
    for (const h of hosts) ledger.publish(h.pds, await post(h.accounts[0]!))
    const connectionsBefore = hosts.map((h) => h.pds.stats.connections)

    relay = await startTestRelay({ databaseUrl: db.url, plcUrl: plc.url, handles })
    expect(await healthStatus(relay)).toBe(200)
    for (const [i, h] of hosts.entries()) {
      await waitUntil(() => h.pds.stats.connections > connectionsBefore[i]! && h.pds.openConnections === 1, `resubscription to ${h.pds.hostname}`)
      const stored = cursors.get(h.pds.hostname)!
      expect(stored).toBeGreaterThan(0)
      expect(h.pds.stats.cursors[connectionsBefore[i]!]).toBe(stored)
    }
    const readerB = await FirehoseClient.connect(relay, lastA)
    cleanups.push(() => readerB.close())
    for (const s of streams) await s.stop()

    // Old output up to the stop + new output after it = exactly what was published, per account.
    const combined = { of: (did: string): FirehoseEvent[] => [...readerA.of(did), ...readerB.of(did)] }
    await waitUntil(
      () => [...ledger.expected].every(([did, keys]) => combined.of(did).length >= keys.length),
      'every published event through one relay or the other',
      20_000,
    )
    await ledger.expectAllForwarded(combined)
    expect(readerB.events.length).toBeGreaterThan(0)
    expect(readerB.events[0]!.seq).toBe(lastA + 1)
    ledger.expectOutputValid(readerB)

    // A consumer replaying the whole log from the new relay sees the same.
    const replay = await FirehoseClient.connect(relay, 0)
    cleanups.push(() => replay.close())
    await replay.waitFor((ev) => ev.length >= readerA.events.length + readerB.events.length, 'full replay')
    await ledger.expectAllForwarded(replay)
    ledger.expectOutputValid(replay)
    for (const h of hosts) expect((await hostStatus(relay, h.pds.hostname)).seq).toBe(h.pds.seq)
  }, 60_000)

  it('stopped in the middle of a backlog: the rest comes after the restart, once', async () => {
    const { db, plc, handles, ledger } = await freshWorld()
    // A trusted host (5,000 events/s): the backlog is limited by processing, not by the rate limits.
    // Few events of a host in ingest at once, so most of the backlog is still upstream at the stop.
    const env = { RELAY_TRUSTED_DOMAINS: 'localhost', RELAY_HOST_CONCURRENCY: '2' }
    let relay: Relay = await startTestRelay({ databaseUrl: db.url, plcUrl: plc.url, handles, env })
    cleanups.push(() => relay.stop())
    const readerA = await FirehoseClient.connect(relay, 0)
    cleanups.push(() => readerA.close())
    const h = await startHost(relay, plc, handles, ledger, { accounts: 6 })
    cleanups.push(() => h.pds.close())
    await ledger.expectAllForwarded(readerA)

    const backlog = []
    for (let i = 0; i < 240; i++) {
      const account = h.accounts[i % h.accounts.length]!
      backlog.push(i % 10 === 5 ? account.accountEvent(true) : await post(account))
    }
    const before = readerA.events.length
    ledger.publish(h.pds, ...backlog)
    await readerA.waitFor((ev) => ev.length >= before + 40, 'part of the backlog out')
    await relay.stop()
    const lastA = readerA.events.at(-1)!.seq
    expect(readerA.events.length - before).toBeLessThan(backlog.length)

    relay = await startTestRelay({ databaseUrl: db.url, plcUrl: plc.url, handles, env })
    const readerB = await FirehoseClient.connect(relay, lastA)
    cleanups.push(() => readerB.close())
    const combined = { of: (did: string): FirehoseEvent[] => [...readerA.of(did), ...readerB.of(did)] }
    await ledger.expectAllForwarded(combined, 20_000)
    expect(readerB.events[0]!.seq).toBe(lastA + 1)
    ledger.expectOutputValid(readerB)
    await waitUntil(async () => (await hostStatus(relay, h.pds.hostname)).seq === h.pds.seq, 'host cursor at the end of the backlog')
  }, 60_000)
})
