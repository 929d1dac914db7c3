/**
 * The pull model under load: a Jetstream subscriber that stops reading costs the relay at most its
 * socket's high-water mark plus one page, never a backlog; it is cut off (`too-slow`) once it falls
 * `maxLag` events behind after having been live, while a reader that keeps up gets every message,
 * in order, through the log → ring → live path. Real sequencer and event log on Postgres, real
 * WebSockets; commit events carry real CARs with ~4 KB records.
 */
import { createServer, type Server } from 'node:http'
import type { AddressInfo, Socket } from 'node:net'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { CidLinkWrapper, encode, toBytes } from '@atcute/cbor'
import { Registry } from 'prom-client'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { cidForCbor } from '../../src/atproto/cid.js'
import { JetLogReader } from '../../src/jetstream/log-reader.js'
import { JetstreamServer } from '../../src/jetstream/server.js'
import { Sequencer } from '../../src/sequencer/sequencer.js'
import { createTestDatabase, type TestDatabase } from '../helpers/db.js'
import { createAccounts, createHost, fakeCid, rev, silentLogger } from '../sequencer/helpers.js'
import { waitUntil } from '../helpers/wait.js'
import WebSocket from 'ws'

setFlagsFromString('--expose-gc')
const gc = runInNewContext('gc') as () => void

function varint(n: number): Buffer {
  const out: number[] = []
  while (n >= 0x80) {
    out.push((n & 0x7f) | 0x80)
    n >>>= 7
  }
  out.push(n)
  return Buffer.from(out)
}

/** A CAR v1 of the given blocks (root: the first). */
function car(blocks: { cid: Uint8Array; bytes: Uint8Array }[]): Uint8Array {
  const header = encode({ version: 1, roots: [new CidLinkWrapper(blocks[0]!.cid)] })
  const parts: Buffer[] = [varint(header.length), Buffer.from(header)]
  for (const b of blocks) parts.push(varint(b.cid.length + b.bytes.length), Buffer.from(b.cid), Buffer.from(b.bytes))
  return Buffer.concat(parts)
}

let counter = 0
/** A #commit body with one create op whose ~4 KB post record is in the CAR. */
function commitWithRecord(did: string): { body: Uint8Array; revision: string } {
  const revision = rev(++counter)
  const record = encode({ $type: 'app.bsky.feed.post', text: `post ${counter} `.padEnd(4000, 'x'), createdAt: '2026-12-02T00:00:00.000Z' })
  const cid = cidForCbor(record)
  const commit = encode({ did, version: 3, rev: revision, data: new CidLinkWrapper(fakeCid(`d${counter}`)), prev: null, sig: toBytes(new Uint8Array(64)) })
  const commitCid = cidForCbor(commit)
  const body = encode({
    seq: 0,
    repo: did,
    rev: revision,
    since: null,
    commit: new CidLinkWrapper(commitCid),
    blocks: toBytes(car([{ cid: commitCid, bytes: commit }, { cid, bytes: record }])),
    ops: [{ action: 'create', path: `app.bsky.feed.post/${revision}`, cid: new CidLinkWrapper(cid) }],
    blobs: [],
    time: '2026-12-02T00:00:00.000Z',
    tooBig: false,
    rebase: false,
  })
  return { body, revision }
}

/** A client that keeps only each message's rkey (this process's own memory is measured). */
class KeyClient {
  readonly rkeys: string[] = []
  closeCode: number | undefined
  private constructor(readonly ws: WebSocket) {
    ws.on('message', (data: Buffer) => this.rkeys.push(/"rkey":"([^"]+)"/.exec(data.toString('latin1', 0, 400))?.[1] ?? '?'))
    ws.on('close', (code) => (this.closeCode = code))
    ws.on('error', () => undefined)
  }
  static async connect(url: string): Promise<KeyClient> {
    const ws = new WebSocket(url, { perMessageDeflate: false })
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve())
      ws.once('error', reject)
    })
    return new KeyClient(ws)
  }
}

describe('Jetstream slow readers (postgres)', () => {
  let t: TestDatabase
  let sequencer: Sequencer
  let jetstream: JetstreamServer
  let server: Server
  let url: string
  let accounts: number[]
  const registry = new Registry()

  async function produce(n: number): Promise<number[]> {
    const submits: Promise<number>[] = []
    for (let i = 0; i < n; i++) {
      const k = i % accounts.length
      const did = `did:plc:slow${k}`
      const { body, revision } = commitWithRecord(did)
      submits.push(sequencer.submit({ accountId: accounts[k]!, did, kind: 'commit', t: '#commit', body, head: { rev: revision, commitCid: fakeCid(`c${counter}`), dataCid: fakeCid(`d${counter}`) } }))
    }
    return Promise.all(submits)
  }

  // The stalled client reads its close frame only after all 24 rounds, which take minutes on a loaded
  // machine: the grace before the server drops the socket outright (1006) must outlast them.
  const CLOSE_GRACE_MS = 600_000

  beforeAll(async () => {
    t = await createTestDatabase('postgres')
    accounts = await createAccounts(t.storage, await createHost(t.storage, 'pds.slow.example.com'), 4, 'did:plc:slow')
    sequencer = new Sequencer({ storage: t.storage, initialSeq: 1, maxBatchEvents: 100, maxBatchDelayMs: 2, retentionIntervalMs: 0, logger: silentLogger, registry })
    await sequencer.start()
    await produce(300) // in the log before Jetstream starts: replayed from the log, not the ring
    // A small ring, small pages and a small high-water mark force the log → ring → live path and the cut-off.
    jetstream = new JetstreamServer({ source: sequencer, log: new JetLogReader(t.storage.db), ringSize: 64, pageSize: 50, maxLag: 500, highWaterBytes: 64 * 1024, closeGraceMs: CLOSE_GRACE_MS, logger: silentLogger, registry })
    server = createServer((_req, res) => res.end())
    server.on('upgrade', (req, socket, head) => jetstream.handleUpgrade(req, socket, head))
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    url = `ws://127.0.0.1:${(server.address() as AddressInfo).port}/subscribe`
  }, 180_000)
  afterAll(async () => {
    await jetstream?.close()
    await sequencer?.stop()
    await new Promise<void>((resolve) => server?.close(() => resolve()))
    await t?.cleanup()
  })

  it('a stalled subscriber is cut off with bounded memory while a fast one gets every message in order', async () => {
    const fast = await KeyClient.connect(`${url}?cursor=1`)
    const slow = await KeyClient.connect(`${url}?cursor=1`)
    await waitUntil(() => fast.rkeys.length >= 300 && slow.rkeys.length >= 300, 'the replayed log on both', 20_000)
    await waitUntil(() => jetstream.subscriberInfo().every((s) => s.state === 'live'), 'both live', 10_000)
    // Stop reading: the kernel buffers fill, then the relay's high-water mark stops its pump.
    ;(slow.ws as unknown as { _socket: Socket })._socket.pause()
    let maxBuffered = 0
    const sampler = setInterval(() => {
      for (const s of jetstream.subscriberInfo()) maxBuffered = Math.max(maxBuffered, s.bufferedBytes)
    }, 5)
    const live = () => {
      gc()
      const m = process.memoryUsage()
      return m.heapUsed + m.arrayBuffers
    }
    let before = 0
    const samples: number[] = []
    let produced = 300
    // 6,000 messages of ~4.3 KB: ~26 MB, far more than the socket buffers and the relay's limits.
    for (let round = 0; round < 24; round++) {
      await produce(250)
      produced += 250
      await waitUntil(() => fast.rkeys.length >= produced, `fast subscriber keeping up (round ${round})`, 20_000)
      if (round === 2) before = live()
      else if (round > 2) samples.push(live())
    }
    clearInterval(sampler)
    expect(fast.rkeys).toEqual(Array.from({ length: produced }, (_, i) => rev(i + 1)))
    const cut = (await registry.getSingleMetric('relay_jetstream_cut_off_total')!.get()).values
    expect(cut.find((v) => v.labels.reason === 'too-slow')?.value).toBe(1)
    // Per socket: the high-water mark plus one page (50 messages of ~4.4 KB).
    expect(maxBuffered).toBeLessThan(64 * 1024 + 51 * 4500)
    // ~26 MB went through; a relay queueing for the stalled subscriber would have kept most of it.
    expect(Math.min(...samples.slice(-3)) - before).toBeLessThan(8 * 1024 * 1024)
    ;(slow.ws as unknown as { _socket: Socket })._socket.resume()
    await waitUntil(() => slow.closeCode !== undefined, 'the slow subscriber closed', 20_000)
    expect(slow.closeCode).toBe(1008)
    expect(slow.rkeys.length).toBeLessThan(produced)
    // What it did get is an unbroken prefix.
    expect(slow.rkeys).toEqual(Array.from({ length: slow.rkeys.length }, (_, i) => rev(i + 1)))
    fast.ws.terminate()
  }, 180_000)
})
