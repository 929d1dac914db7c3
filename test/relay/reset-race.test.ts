/**
 * A host resets its sequence while one of its old events is still being
 * processed (its DID document is slow to resolve). The old event finishing
 * after the reset must not drag the host cursor back to the old sequence:
 * otherwise the next reconnect asks for that old cursor, gets FutureCursor
 * again and reconnects live, losing what the host published meanwhile.
 */
import { afterAll, describe, expect, it } from 'vitest'
import type { Relay } from '../../src/relay.js'
import { createPostgresDatabase } from '../helpers/db.js'
import { Ledger, post, servedBy, startHost, type TestHost } from './accounts.js'
import { DidDocServer, healthStatus, hostStatus, startTestRelay } from '../helpers/relay.js'
import { FirehoseClient } from '../helpers/firehose-client.js'
import { waitUntil } from '../helpers/wait.js'

const cleanups: (() => Promise<unknown>)[] = []
afterAll(async () => {
  for (const fn of cleanups.reverse()) await fn().catch(() => undefined)
})

describe('sequence reset while an old event is in flight', () => {
  it('the host cursor follows the new sequence and the next reconnect resumes from it', async () => {
    const db = await createPostgresDatabase()
    cleanups.push(() => db.drop())
    const docs = await DidDocServer.start()
    cleanups.push(() => docs.close())
    const handles = new Map<string, string>()
    const ledger = new Ledger()
    const relay: Relay = await startTestRelay({ databaseUrl: db.url, plcUrl: docs.url, handles })
    cleanups.push(() => relay.stop())
    const reader = await FirehoseClient.connect(relay, 0)
    cleanups.push(() => reader.close())
    const host: TestHost = await startHost(relay, servedBy(docs), handles, ledger, { accounts: 2 })
    cleanups.push(() => host.pds.close())
    const [fast, slow] = host.accounts as [TestHost['accounts'][0], TestHost['accounts'][0]]
    const name = host.pds.hostname
    ledger.publish(host.pds, await post(fast))
    await ledger.expectAllForwarded(reader)
    const oldSeq = host.pds.seq + 1

    // The last event of the old sequence: an #identity whose forced refresh takes a while.
    docs.delays.set(slow.did, 1_500)
    const received = relay.stats.snapshot(name).received
    ledger.publish(host.pds, slow.identityEvent())
    await waitUntil(() => relay.stats.snapshot(name).received > received, 'the relay to take the slow event')

    const connections = host.pds.stats.connections
    host.pds.resetSequence()
    await waitUntil(
      () => host.pds.openConnections === 1 && host.pds.stats.connections >= connections + 2 && host.pds.stats.cursors.at(-1) === null,
      'FutureCursor, then a live subscription',
    )
    expect(host.pds.stats.cursors.slice(connections)).toContain(oldSeq)
    ledger.publish(host.pds, await post(fast), await post(fast))
    // Everything out, the slow old event included (it was valid).
    await ledger.expectAllForwarded(reader)
    docs.delays.clear()

    let stored = -1
    await waitUntil(
      async () => (stored = (await hostStatus(relay, name)).seq) === host.pds.seq,
      () => `stored host cursor ${host.pds.seq} (have ${stored}; the old sequence ended at ${oldSeq})`,
    )
    expect(relay.crawler.connection(name)?.cursor).toBe(host.pds.seq)

    // A plain disconnect now: what the host publishes meanwhile comes back through the cursor.
    const next = await post(fast)
    const before = host.pds.stats.connections
    host.pds.dropConnections()
    ledger.publish(host.pds, next)
    await waitUntil(() => host.pds.stats.connections > before && host.pds.openConnections === 1, 'reconnect')
    expect(host.pds.stats.cursors[before]).toBe(host.pds.seq - 1)
    await ledger.expectAllForwarded(reader)
    ledger.expectOutputValid(reader)
    expect(await healthStatus(relay)).toBe(200)
  }, 60_000)
})
