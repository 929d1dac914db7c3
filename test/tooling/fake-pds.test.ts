import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import WebSocket from 'ws'
import { FakePds } from '../helpers/fake-pds.js'
import { decodeFrame, encodeEventFrame, frameSeq } from '../helpers/frames.js'
import { garbageFrame } from '../helpers/hostile-frames.js'
import { postRecord, Rng } from '../helpers/records.js'
import { TestAccount } from '../helpers/repo-builder.js'
import { waitUntil } from '../helpers/wait.js'

interface Client {
  ws: WebSocket
  frames: Uint8Array[]
  texts: string[]
  closed: Promise<{ code: number; reason: string }>
  opened: Promise<void>
}

const clients: Client[] = []

function connect(pds: FakePds, cursor?: number): Client {
  const url = `${pds.wsUrl}/xrpc/com.atproto.sync.subscribeRepos${cursor === undefined ? '' : `?cursor=${cursor}`}`
  const ws = new WebSocket(url)
  const frames: Uint8Array[] = []
  const texts: string[] = []
  ws.on('message', (data, isBinary) => {
    if (isBinary) frames.push(new Uint8Array(data as Buffer))
    else texts.push(String(data))
  })
  const closed = new Promise<{ code: number; reason: string }>((resolve) => ws.on('close', (code, reason) => resolve({ code, reason: String(reason) })))
  const opened = new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve())
    ws.once('error', reject)
  })
  const client = { ws, frames, texts, closed, opened }
  clients.push(client)
  return client
}

const seqs = (c: Client) => c.frames.map((f) => frameSeq(f))

describe('FakePds', () => {
  const rng = new Rng(3)
  let pds: FakePds
  let account: TestAccount

  beforeAll(async () => {
    pds = await FakePds.start({ repoProvider: async (did) => (did === account.did ? account.repoCar() : null) })
    account = await TestAccount.create({ pdsUrl: pds.url })
  })
  afterEach(() => {
    for (const c of clients.splice(0)) c.ws.terminate()
  })
  afterAll(async () => {
    await pds.close()
  })

  it('exposes url and hostname for localhost:<port>', () => {
    expect(pds.port).toBeGreaterThan(0)
    expect(pds.url).toBe(`http://localhost:${pds.port}`)
    expect(pds.hostname).toBe(`localhost:${pds.port}`)
  })

  it('sequences published events and replays seq > cursor, then goes live', async () => {
    expect(pds.publish(...(await account.genesis()))).toEqual([1, 2, 3, 4])
    for (let i = 0; i < 3; i++) pds.publish(await account.createRecord('app.bsky.feed.post', postRecord(rng, new Date().toISOString())))
    expect(pds.seq).toBe(7)

    const all = connect(pds, 0)
    const tail = connect(pds, 5)
    const live = connect(pds)
    await Promise.all([all.opened, tail.opened, live.opened])
    await waitUntil(() => all.frames.length === 7 && tail.frames.length === 2, 'replay')
    expect(seqs(all)).toEqual([1, 2, 3, 4, 5, 6, 7])
    expect(seqs(tail)).toEqual([6, 7])
    expect(live.frames).toHaveLength(0)

    pds.publish(await account.createRecord('app.bsky.feed.post', postRecord(rng, new Date().toISOString())))
    await waitUntil(() => all.frames.length === 8 && tail.frames.length === 3 && live.frames.length === 1, 'live frame')
    expect(seqs(live)).toEqual([8])
    const { header, body } = decodeFrame(live.frames[0]!)
    expect(header).toEqual({ t: '#commit', op: 1 })
    expect(body.repo).toBe(account.did)
    // The three clients connect concurrently, so the server may see them in any order.
    const lastThree = pds.stats.cursors.slice(-3)
    expect(lastThree).toHaveLength(3)
    expect(lastThree).toEqual(expect.arrayContaining([0, 5, null]))
  })

  it('answers a cursor beyond its seq with FutureCursor and closes 1008', async () => {
    const c = connect(pds, pds.seq + 1)
    const closed = await c.closed
    expect(closed).toEqual({ code: 1008, reason: 'FutureCursor' })
    expect(c.frames).toHaveLength(1)
    expect(decodeFrame(c.frames[0]!)).toEqual({ header: { op: -1 }, body: { error: 'FutureCursor', message: 'Cursor in the future.' } })
  })

  it('serves describeServer, getRepoStatus, getLatestCommit, listRepos, getRepo from what it emitted', async () => {
    const get = async (path: string) => {
      const res = await fetch(`${pds.url}/xrpc/${path}`)
      return { status: res.status, body: (await res.json()) as Record<string, unknown> }
    }
    expect((await get('com.atproto.server.describeServer')).body).toMatchObject({ did: 'did:web:localhost', availableUserDomains: ['.test'] })
    expect((await get(`com.atproto.sync.getRepoStatus?did=${account.did}`)).body).toEqual({ did: account.did, active: true, rev: account.rev })
    expect((await get(`com.atproto.sync.getLatestCommit?did=${account.did}`)).body).toEqual({ cid: account.head.toString(), rev: account.rev })
    const list = await get('com.atproto.sync.listRepos')
    expect(list.body.repos).toEqual([{ did: account.did, head: account.head.toString(), rev: account.rev, active: true }])
    expect((await get('com.atproto.sync.getRepoStatus?did=did:plc:nobody')).body).toMatchObject({ error: 'RepoNotFound' })

    const car = await fetch(`${pds.url}/xrpc/com.atproto.sync.getRepo?did=${account.did}`)
    expect(car.headers.get('content-type')).toBe('application/vnd.ipld.car')
    expect((await car.arrayBuffer()).byteLength).toBeGreaterThan(500)

    pds.publish(account.accountEvent(false, 'deactivated'))
    expect((await get(`com.atproto.sync.getRepoStatus?did=${account.did}`)).body).toEqual({ did: account.did, active: false, status: 'deactivated' })
    expect(await get(`com.atproto.sync.getLatestCommit?did=${account.did}`)).toMatchObject({ status: 400, body: { error: 'RepoDeactivated' } })
    pds.publish(...(await account.activationEvents()))
    expect((await get(`com.atproto.sync.getRepoStatus?did=${account.did}`)).body).toMatchObject({ active: true })
  })

  it('emit() stores pre-encoded frames; emitRaw() reaches live sockets in order, unstored', async () => {
    const c = connect(pds)
    await c.opened
    const base = pds.seq
    const frame = encodeEventFrame(account.identityEvent(), base + 1)
    pds.emitRaw(garbageFrame(40))
    expect(pds.emit(frame)).toBe(base + 1)
    pds.emitRaw('not binary', { binary: false })
    await waitUntil(() => c.frames.length === 2 && c.texts.length === 1, 'raw + stored')
    expect(c.frames[0]).toHaveLength(40)
    expect(frameSeq(c.frames[1]!)).toBe(base + 1)
    expect(c.texts).toEqual(['not binary'])

    const replay = connect(pds, base)
    await waitUntil(() => replay.frames.length === 1, 'replay of emitted frame')
    expect(Buffer.from(replay.frames[0]!).equals(Buffer.from(frame))).toBe(true)
  })

  it('dropConnections() cuts sockets; resetSequence() turns the old cursor into FutureCursor', async () => {
    const c = connect(pds, 0)
    await c.opened
    const before = pds.stats.connections
    pds.dropConnections()
    expect((await c.closed).code).toBe(1006)
    const oldSeq = pds.seq
    pds.resetSequence()
    expect(pds.seq).toBe(0)
    const again = connect(pds, oldSeq)
    expect((await again.closed).reason).toBe('FutureCursor')
    expect(pds.publish(account.identityEvent())).toEqual([1])
    const fresh = connect(pds, 0)
    await waitUntil(() => fresh.frames.length === 1, 'frame after reset')
    expect(frameSeq(fresh.frames[0]!)).toBe(1)
    expect(pds.stats.connections).toBe(before + 2)
  })

  it('setRefuseConnections refuses with 503 or a reset, then accepts again', async () => {
    pds.setRefuseConnections(true)
    const refused = connect(pds, 0)
    await expect(refused.opened).rejects.toThrow(/503/)
    pds.setRefuseConnections('reset')
    const reset = connect(pds, 0)
    await expect(reset.opened).rejects.toThrow()
    expect(pds.stats.refused).toBe(2)
    pds.setRefuseConnections(false)
    const ok = connect(pds, 0)
    await ok.opened
  })

  it('flood with an offered rate holds back; without one it delivers everything in order', async () => {
    pds.resetSequence()
    const event = account.identityEvent()
    const slow = connect(pds)
    await slow.opened
    const arrivals: number[] = []
    slow.ws.on('message', () => arrivals.push(performance.now()))
    const started = performance.now()
    pds.flood((seq) => encodeEventFrame(event, seq), { count: 1000, ratePerSec: 100 })
    await waitUntil(() => slow.frames.length >= 30, '30 paced frames')
    // At 100/s the 30th frame cannot leave before 300 ms: a lower bound, which a slow machine only widens.
    expect(arrivals[29]! - started).toBeGreaterThanOrEqual(290)
    pds.setRate(0)
    await pds.playbackDone()
    await waitUntil(() => slow.frames.length === 1000, 'flood')
    const got = seqs(slow)
    expect(got[0]).toBe(1)
    expect(got.every((s, i) => s === i + 1)).toBe(true)
  })

  it('applies backpressure: a consumer that stops reading does not make it buffer the flood', async () => {
    const small = await FakePds.start({ highWaterMark: 64 * 1024 })
    try {
      const event = account.identityEvent()
      const c = connect(small)
      await c.opened
      ;(c.ws as unknown as { _socket: { pause(): void; resume(): void } })._socket.pause()
      small.flood((seq) => encodeEventFrame(event, seq))
      // An unbounded flood into a socket nobody reads: sending must stop, held at the high-water mark.
      await waitUntil(() => small.drainingConnections === 1 && small.stats.framesSent > 0, 'the flood held back by the paused consumer')
      const sentWhilePaused = small.stats.framesSent
      // ~100 B frames: 64 KiB of our buffer plus the kernel's socket buffers, far from unbounded.
      expect(small.maxBufferedAmount).toBeLessThan(64 * 1024 + 1024)
      expect(sentWhilePaused).toBeLessThan(100_000)
      ;(c.ws as unknown as { _socket: { resume(): void } })._socket.resume()
      await waitUntil(() => c.frames.length > sentWhilePaused, 'resume after pause')
      small.stopPlayback()
    } finally {
      for (const c of clients.splice(0)) c.ws.terminate()
      await small.close()
    }
  })
})
