/** A sequencer + firehose behind a loopback HTTP server, and a collecting ws client. */
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { Registry } from 'prom-client'
import WebSocket from 'ws'
import { decodeFrame } from '../../src/atproto/frame.js'
import { Firehose, type FirehoseOptions } from '../../src/firehose/firehose.js'
import { Sequencer, type SequencerOptions } from '../../src/sequencer/sequencer.js'
import type { TestDatabase } from '../helpers/db.js'
import { commitEvent, createAccounts, createHost, rev, silentLogger } from '../sequencer/helpers.js'

export interface Relay {
  sequencer: Sequencer
  firehose: Firehose
  server: Server
  registry: Registry
  url: string
  accounts: number[]
  /** Commits n events (round-robin over the accounts) and returns their seqs. */
  produce(n: number, padding?: number): Promise<number[]>
  close(): Promise<void>
}

let revCounter = 0

export async function startRelay(
  t: TestDatabase,
  opts: { sequencer?: Partial<SequencerOptions>; firehose?: Partial<FirehoseOptions>; hostname?: string } = {},
): Promise<Relay> {
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
  const relay: Relay = {
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

export interface Received {
  op: number
  t?: string
  seq?: number
  error?: string
  name?: string
}

export interface Client {
  ws: WebSocket
  frames: Received[]
  seqs(): number[]
  opened: Promise<void>
  closed: Promise<{ code: number; reason: string }>
  /** Resolves when the handshake is refused with an HTTP status. */
  rejected: Promise<{ status: number; body: string }>
  close(): void
}

export function connect(url: string, cursor?: string | number): Client {
  const full = cursor === undefined ? url : `${url}?cursor=${cursor}`
  const ws = new WebSocket(full, { perMessageDeflate: false })
  const frames: Received[] = []
  ws.on('message', (data: Buffer, isBinary) => {
    if (!isBinary) throw new Error('text frame on the firehose')
    const f = decodeFrame(new Uint8Array(data))
    if (f.op === 1) {
      const r: Received = { op: 1, t: f.t }
      if (typeof f.body.seq === 'number') r.seq = f.body.seq
      if (typeof f.body.name === 'string') r.name = f.body.name
      frames.push(r)
    } else {
      frames.push({ op: -1, error: f.error })
    }
  })
  const opened = new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve())
    ws.once('error', reject)
  })
  opened.catch(() => undefined)
  const closed = new Promise<{ code: number; reason: string }>((resolve) => {
    ws.once('close', (code, reason) => resolve({ code, reason: reason.toString() }))
  })
  const rejected = new Promise<{ status: number; body: string }>((resolve) => {
    ws.once('unexpected-response', (_req, res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (chunk: string) => (body += chunk))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }))
    })
  })
  ws.on('error', () => undefined)
  return {
    ws,
    frames,
    seqs: () => frames.filter((f) => f.seq !== undefined).map((f) => f.seq as number),
    opened,
    closed,
    rejected,
    close: () => ws.terminate(),
  }
}

export function range(from: number, to: number): number[] {
  return Array.from({ length: to - from + 1 }, (_, i) => from + i)
}
