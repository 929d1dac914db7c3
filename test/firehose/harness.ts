/**
 * A sequencer + firehose behind a loopback HTTP server (no crawler, no ingest, no API): what the
 * firehose tests drive. Not the relay harness (that is test/helpers/relay.ts); read it with
 * test/helpers/firehose-client.ts.
 */
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { Registry } from 'prom-client'
import { Firehose, type FirehoseOptions } from '../../src/firehose/firehose.js'
import { Sequencer, type SequencerOptions } from '../../src/sequencer/sequencer.js'
import { afterAll, beforeAll } from 'vitest'
import { createTestDatabase, type TestDatabase } from '../helpers/db.js'
import { commitEvent, createAccounts, createHost, rev, silentLogger } from '../sequencer/helpers.js'

export interface FirehoseServer {
  sequencer: Sequencer
  firehose: Firehose
  server: Server
  registry: Registry
  /** ws:// URL of subscribeRepos */
  url: string
  accounts: number[]
  /** Commits n events (round-robin over the accounts) and returns their seqs. */
  produce(n: number, padding?: number): Promise<number[]>
  close(): Promise<void>
}

let revCounter = 0

export async function startFirehoseServer(
  t: TestDatabase,
  opts: { sequencer?: Partial<SequencerOptions>; firehose?: Partial<FirehoseOptions>; hostname?: string } = {},
): Promise<FirehoseServer> {
  const registry = new Registry()
  const hostId = await createHost(t.storage, opts.hostname ?? `pds-${Math.random().toString(36).slice(2)}.example.com`)
  const accounts = await createAccounts(t.storage, hostId, 4, `did:plc:h${hostId}x`)
  const sequencer = new Sequencer({
    storage: t.storage,
    initialSeq: 1,
    maxBatchDelayMs: 2,
    retentionIntervalMs: 0,
    logger: silentLogger,
    registry,
    ...opts.sequencer,
  })
  await sequencer.start()
  const firehose = new Firehose({
    sequencer,
    eventLog: sequencer.eventLog,
    maxConsumerLag: 10_000,
    logger: silentLogger,
    registry,
    ...opts.firehose,
  })
  const server = createServer((_req, res) => {
    res.statusCode = 404
    res.end()
  })
  server.on('upgrade', (req, socket, head) => firehose.handleUpgrade(req, socket, head))
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as AddressInfo).port
  const relay: FirehoseServer = {
    sequencer,
    firehose,
    server,
    registry,
    url: `ws://127.0.0.1:${port}/xrpc/com.atproto.sync.subscribeRepos`,
    accounts,
    async produce(n, padding = 64) {
      const submits: Promise<number>[] = []
      for (let i = 0; i < n; i++) {
        const k = i % accounts.length
        submits.push(sequencer.submit(commitEvent(accounts[k]!, `did:plc:h${hostId}x${k}`, rev(++revCounter), { padding })))
      }
      return Promise.all(submits)
    },
    async close() {
      await firehose.close()
      await sequencer.stop()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
  return relay
}

export function range(from: number, to: number): number[] {
  return Array.from({ length: to - from + 1 }, (_, i) => from + i)
}

/**
 * One Postgres database and firehose server for the enclosing describe block: started before
 * its tests (then `ready` gets them, e.g. to keep them or produce events) and closed after.
 */
export function firehoseServerPerSuite(
  opts: Parameters<typeof startFirehoseServer>[1],
  ready: (t: TestDatabase, relay: FirehoseServer) => void | Promise<void>,
): void {
  let t: TestDatabase | undefined
  let relay: FirehoseServer | undefined
  beforeAll(async () => {
    t = await createTestDatabase('postgres')
    relay = await startFirehoseServer(t, opts)
    await ready(t, relay)
  })
  afterAll(async () => {
    await relay?.close()
    await t?.cleanup()
  })
}
