/**
 * A loopback fake PDS: `subscribeRepos` with cursor replay / live / FutureCursor,
 * the sync query endpoints a relay calls, and knobs for tests (drop, refuse,
 * reset the sequence, flood, offered rate). Frames go out as fast as each
 * socket's `bufferedAmount` allows.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { Duplex } from 'node:stream'
import { fromUint8Array } from '@atcute/car'
import { WebSocketServer, type WebSocket } from 'ws'
import { decodeFrame, encodeErrorFrame, encodeEventFrame, type PdsEvent } from './frames.js'
import { waitUntil } from './wait.js'

export interface SeqFrame {
  seq: number
  bytes: Uint8Array
}

export interface RepoState {
  did: string
  head: string | null
  rev: string | null
  active: boolean
  status?: string
  /** Record paths created and not deleted by the commits this host served (describeRepo's collections). */
  records?: Set<string>
}

export interface FakePdsOptions {
  /** Default 0 (any free port). */
  port?: number
  /** Bytes buffered on a socket before we wait for it to drain. Default 1 MiB. */
  highWaterMark?: number
  /** What a subscriber without `?cursor=` gets: live only (spec, default) or everything stored. */
  noCursor?: 'live' | 'oldest'
  /** Serves `com.atproto.sync.getRepo`. */
  repoProvider?: (did: string) => Promise<Uint8Array | null>
  /** Extra fields merged into the describeServer answer. */
  describeServer?: Record<string, unknown>
}

export interface PlayOptions {
  /** Offered rate in frames/s; default unlimited (as fast as subscribers take them). */
  ratePerSec?: number
}

export interface FakePdsStats {
  /** WebSocket connections accepted, ever. */
  connections: number
  /** Currently open subscriber sockets. */
  open: number
  /** Upgrades refused by `setRefuseConnections`. */
  refused: number
  framesSent: number
  bytesSent: number
  /** The `cursor` of every accepted subscription, in order (null = none given). */
  cursors: (number | null)[]
  /** describeServer requests answered (the relay's admission probes). */
  describeCalls: number
  /** describeRepo requests answered (the relay's listReposByCollection backfill). */
  describeRepoCalls: number
}

interface RawItem {
  at: number
  data: Uint8Array | string
  binary: boolean
}

interface Conn {
  ws: WebSocket
  next: number
  raw: RawItem[]
  waiting: boolean
  /** Over the high-water mark, waiting for the socket to drain (backpressure, not a yield). */
  draining: boolean
  /** Inside pump(): stops re-entry when appending wakes every socket. */
  busy: boolean
  closed: boolean
}

type SourceItem = Uint8Array | SeqFrame

const BATCH_BEFORE_YIELD = 512

export class FakePds {
  readonly port: number
  readonly url: string
  readonly wsUrl: string
  /** `localhost:<port>`, what a relay is asked to crawl. */
  readonly hostname: string
  readonly stats: FakePdsStats = { connections: 0, open: 0, refused: 0, framesSent: 0, bytesSent: 0, cursors: [], describeCalls: 0, describeRepoCalls: 0 }

  private history: SeqFrame[] = []
  private currentSeq = 0
  private readonly conns = new Set<Conn>()
  private readonly repos = new Map<string, RepoState>()
  private refuse: false | 'http' | 'reset' = false
  /** Awaited after describeRepo has computed its answer and before sending it (a test holds the answer back). */
  beforeDescribeRepoAnswer: ((did: string) => Promise<void>) | undefined
  private source: Iterator<SourceItem> | null = null
  private sourceRate = 0
  private sourceAnchor = 0
  private sourceAppended = 0
  private sourceTimer: NodeJS.Timeout | null = null
  private sourceDoneWaiters: (() => void)[] = []
  private readonly wss = new WebSocketServer({ noServer: true, perMessageDeflate: false, maxPayload: 1024 })
  private readonly highWaterMark: number
  private readonly noCursor: 'live' | 'oldest'

  private constructor(
    private readonly servers: Server[],
    port: number,
    private readonly opts: FakePdsOptions,
  ) {
    this.port = port
    this.hostname = `localhost:${port}`
    this.url = `http://localhost:${port}`
    this.wsUrl = `ws://localhost:${port}`
    this.highWaterMark = opts.highWaterMark ?? 1024 * 1024
    this.noCursor = opts.noCursor ?? 'live'
  }

  static async start(opts: FakePdsOptions = {}): Promise<FakePds> {
    const primary = createServer()
    await listen(primary, opts.port ?? 0, '127.0.0.1')
    const address = primary.address()
    if (!address || typeof address === 'string') throw new Error('fake PDS: no port')
    const servers = [primary]
    // `localhost` may resolve to ::1 elsewhere; bind it too when available.
    const v6 = createServer()
    try {
      await listen(v6, address.port, '::1')
      servers.push(v6)
    } catch {
      v6.close()
    }
    const pds = new FakePds(servers, address.port, opts)
    for (const server of servers) {
      server.on('request', (req, res) => pds.onRequest(req, res))
      server.on('upgrade', (req, socket, head) => pds.onUpgrade(req, socket as Duplex, head as Buffer))
    }
    return pds
  }

  /** Highest seq stored so far (0 when empty). */
  get seq(): number {
    return this.currentSeq
  }
  /** Number of stored (replayable) frames. */
  get storedFrames(): number {
    return this.history.length
  }
  get openConnections(): number {
    return this.conns.size
  }

  /** Connections whose sending is held back until their socket drains (a consumer not reading). */
  get drainingConnections(): number {
    let n = 0
    for (const c of this.conns) if (c.draining) n++
    return n
  }

  /** The most bytes buffered in user space on any open connection (ws `bufferedAmount`). */
  get maxBufferedAmount(): number {
    let max = 0
    for (const c of this.conns) max = Math.max(max, c.ws.bufferedAmount)
    return max
  }

  /** Sequences events like a PDS (seq = last + 1), stores and broadcasts them. Returns their seqs. */
  publish(...events: PdsEvent[]): number[] {
    const seqs: number[] = []
    for (const event of events) {
      const seq = this.currentSeq + 1
      this.append({ seq, bytes: encodeEventFrame(event, seq) })
      this.trackEvent(event.t, event.body)
      seqs.push(seq)
    }
    this.wakeAll()
    return seqs
  }

  /**
   * Stores and broadcasts a pre-encoded frame. Its seq is read from the body
   * unless given; a frame with no seq is refused (use `emitRaw`).
   */
  emit(frame: Uint8Array, opts: { seq?: number } = {}): number {
    let seq = opts.seq
    if (seq === undefined) {
      const decoded = decodeFrame(frame)
      if (typeof decoded.body.seq !== 'number') throw new Error('emit: frame has no seq; use emitRaw')
      seq = decoded.body.seq
      if (decoded.header.op === 1 && typeof decoded.header.t === 'string') this.trackEvent(decoded.header.t, decoded.body)
    }
    this.append({ seq, bytes: frame })
    this.wakeAll()
    return seq
  }

  /** Sends bytes (or text with `binary: false`) to current subscribers only, in order with stored frames; not replayable. */
  emitRaw(data: Uint8Array | string, opts: { binary?: boolean } = {}): void {
    const binary = opts.binary ?? typeof data !== 'string'
    for (const c of this.conns) c.raw.push({ at: this.history.length, data, binary })
    this.wakeAll()
  }

  /** Stores frames as history (replayed to cursors) without going through a play source. */
  loadHistory(frames: Iterable<SourceItem>): void {
    for (const item of frames) this.append(this.toSeqFrame(item))
    this.wakeAll()
  }

  /**
   * Feeds frames lazily: one is appended (stored + broadcast) whenever a
   * subscriber has caught up, no faster than `ratePerSec`. Nothing is appended
   * while nobody is connected. Replaces any previous source.
   */
  play(frames: Iterable<SourceItem>, opts: PlayOptions = {}): void {
    this.stopPlayback()
    this.source = frames[Symbol.iterator]()
    this.sourceRate = opts.ratePerSec ?? 0
    this.sourceAnchor = performance.now()
    this.sourceAppended = 0
    this.wakeAll()
  }

  /** A play source of `count` frames (default unbounded) made by `makeFrame(seq)`. */
  flood(makeFrame: (seq: number) => Uint8Array, opts: PlayOptions & { count?: number } = {}): void {
    const count = opts.count ?? Number.POSITIVE_INFINITY
    // eslint-disable-next-line @typescript-eslint/no-this-alias
    const pds = this
    function* gen(): Generator<SeqFrame> {
      for (let i = 0; i < count; i++) {
        const seq = pds.currentSeq + 1
        yield { seq, bytes: makeFrame(seq) }
      }
    }
    this.play(gen(), opts)
  }

  stopPlayback(): void {
    this.source = null
    if (this.sourceTimer) clearTimeout(this.sourceTimer)
    this.sourceTimer = null
    this.resolveSourceDone()
  }

  /** True while a play/flood source still has frames. */
  get playing(): boolean {
    return this.source !== null
  }

  /** Resolves when the play source is exhausted (or stopped). */
  async playbackDone(): Promise<void> {
    if (!this.source) return
    await new Promise<void>((resolve) => this.sourceDoneWaiters.push(resolve))
  }

  /** Changes the offered rate of the current source (0 = unlimited). */
  setRate(ratePerSec: number): void {
    this.sourceRate = ratePerSec
    this.sourceAnchor = performance.now()
    this.sourceAppended = 0
    this.wakeAll()
  }

  /** Terminates every subscriber socket (TCP reset, no close frame). */
  dropConnections(): void {
    for (const c of this.conns) {
      c.closed = true
      c.ws.terminate()
    }
    this.conns.clear()
    this.stats.open = 0
  }

  /**
   * Forgets all history and restarts seqs at 1, as a PDS whose database was
   * wiped: a relay reconnecting with its stored cursor now gets FutureCursor.
   * Drops current subscribers unless told not to (then they continue from the new seq 1).
   */
  resetSequence(opts: { dropConnections?: boolean } = {}): void {
    this.history = []
    this.currentSeq = 0
    if (opts.dropConnections ?? true) this.dropConnections()
    else for (const c of this.conns) c.next = 0
  }

  /** true: answer upgrades with HTTP 503; 'reset': destroy the TCP socket; false: accept. */
  setRefuseConnections(refuse: boolean | 'reset'): void {
    this.refuse = refuse === true ? 'http' : refuse
  }

  /** Sets what the sync query endpoints report for an account (frames published here also update it). */
  setRepoState(state: RepoState): void {
    this.repos.set(state.did, { ...state })
  }
  getRepoState(did: string): RepoState | undefined {
    return this.repos.get(did)
  }

  /** Resolves once `count` connections have been accepted in total. */
  async waitForConnections(count: number, timeoutMs = 5000): Promise<void> {
    await waitUntil(() => this.stats.connections >= count, () => `fake PDS ${this.hostname}: ${count} connections (${this.stats.connections} so far)`, timeoutMs)
  }

  async close(): Promise<void> {
    this.stopPlayback()
    this.dropConnections()
    this.wss.close()
    await Promise.all(
      this.servers.map(
        (s) =>
          new Promise<void>((resolve) => {
            s.close(() => resolve())
            s.closeAllConnections()
          }),
      ),
    )
  }

  // ---- internals ----

  private toSeqFrame(item: SourceItem): SeqFrame {
    if (!(item instanceof Uint8Array)) return item
    const decoded = decodeFrame(item)
    if (typeof decoded.body.seq !== 'number') throw new Error('frame has no seq')
    if (decoded.header.op === 1 && typeof decoded.header.t === 'string') this.trackEvent(decoded.header.t, decoded.body)
    return { seq: decoded.body.seq, bytes: item }
  }

  private append(frame: SeqFrame): void {
    this.history.push(frame)
    if (frame.seq > this.currentSeq) this.currentSeq = frame.seq
  }

  private trackEvent(t: string, body: Record<string, unknown>): void {
    const did = (t === '#commit' ? body.repo : body.did) as unknown
    if (typeof did !== 'string') return
    let state = this.repos.get(did)
    if (!state) {
      state = { did, head: null, rev: null, active: true }
      this.repos.set(did, state)
    }
    if (t === '#commit') {
      const records = (state.records ??= new Set())
      for (const op of Array.isArray(body.ops) ? (body.ops as { action?: unknown; path?: unknown }[]) : []) {
        if (typeof op.path !== 'string') continue
        if (op.action === 'create') records.add(op.path)
        else if (op.action === 'delete') records.delete(op.path)
      }
      state.head = linkString(body.commit)
      state.rev = typeof body.rev === 'string' ? body.rev : state.rev
    } else if (t === '#sync') {
      state.rev = typeof body.rev === 'string' ? body.rev : state.rev
      const car = body.blocks
      const carBytes = car instanceof Uint8Array ? car : (car as { buf?: Uint8Array } | undefined)?.buf
      if (carBytes) {
        try {
          state.head = fromUint8Array(carBytes).roots[0]?.$link ?? state.head
        } catch {
          // a hostile #sync: keep the old head
        }
      }
    } else if (t === '#account') {
      state.active = body.active === true
      if (typeof body.status === 'string') state.status = body.status
      else delete state.status
    }
  }

  /** Pulls from the play source while the rate allows; returns true if something was appended. */
  private pullSource(): boolean {
    if (!this.source) return false
    let allowed = 256
    if (this.sourceRate > 0) {
      const now = performance.now()
      const due = Math.floor(((now - this.sourceAnchor) / 1000) * this.sourceRate) - this.sourceAppended
      const maxBurst = Math.max(1, Math.ceil(this.sourceRate / 20))
      if (due > maxBurst) {
        // Do not bank an idle period as one huge burst.
        this.sourceAnchor = now - ((this.sourceAppended + maxBurst) / this.sourceRate) * 1000
      }
      allowed = Math.min(allowed, due, maxBurst)
      if (allowed <= 0) {
        this.scheduleSourceWake()
        return false
      }
    }
    let appended = 0
    while (appended < allowed) {
      const r = this.source.next()
      if (r.done) {
        this.source = null
        this.resolveSourceDone()
        break
      }
      this.append(this.toSeqFrame(r.value))
      appended++
    }
    this.sourceAppended += appended
    if (appended > 0) this.wakeAll()
    return appended > 0
  }

  private scheduleSourceWake(): void {
    if (this.sourceTimer) return
    const delay = Math.max(1, 1000 / this.sourceRate)
    this.sourceTimer = setTimeout(() => {
      this.sourceTimer = null
      this.wakeAll()
    }, delay)
  }

  private resolveSourceDone(): void {
    const waiters = this.sourceDoneWaiters
    this.sourceDoneWaiters = []
    for (const w of waiters) w()
  }

  private wakeAll(): void {
    for (const c of this.conns) if (!c.waiting) this.pump(c)
  }

  private pump(c: Conn): void {
    if (c.waiting || c.closed || c.busy) return
    c.busy = true
    // Corking the TCP socket (private `_socket`; deflate is off) turns a burst of sends into one writev.
    const socket = (c.ws as unknown as { _socket?: { cork(): void; uncork(): void } })._socket
    socket?.cork()
    try {
      this.pumpLoop(c)
    } finally {
      c.busy = false
      socket?.uncork()
    }
  }

  private pumpLoop(c: Conn): void {
    if (c.ws.readyState !== c.ws.OPEN) return
    let sent = 0
    for (;;) {
      let data: Uint8Array | string
      let binary = true
      const raw = c.raw[0]
      if (raw && raw.at <= c.next) {
        c.raw.shift()
        data = raw.data
        binary = raw.binary
      } else if (c.next < this.history.length) {
        data = (this.history[c.next++] as SeqFrame).bytes
      } else if (this.pullSource() && c.next < this.history.length) {
        data = (this.history[c.next++] as SeqFrame).bytes
      } else {
        return
      }
      const over = c.ws.bufferedAmount >= this.highWaterMark
      this.stats.framesSent++
      this.stats.bytesSent += typeof data === 'string' ? Buffer.byteLength(data) : data.length
      if (over) {
        c.waiting = true
        c.draining = true
        c.ws.send(data, { binary }, (err) => {
          c.waiting = false
          c.draining = false
          if (!err) this.pump(c)
        })
        return
      }
      c.ws.send(data, { binary })
      if (++sent >= BATCH_BEFORE_YIELD) {
        // Let other sockets and timers run.
        c.waiting = true
        setImmediate(() => {
          c.waiting = false
          this.pump(c)
        })
        return
      }
    }
  }

  private onUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const url = new URL(req.url ?? '/', 'http://localhost')
    if (url.pathname !== '/xrpc/com.atproto.sync.subscribeRepos') {
      socket.end('HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n')
      return
    }
    if (this.refuse) {
      this.stats.refused++
      if (this.refuse === 'reset') socket.destroy()
      else socket.end('HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n')
      return
    }
    const cursorParam = url.searchParams.get('cursor')
    const cursor = cursorParam === null ? null : Number(cursorParam)
    this.wss.handleUpgrade(req, socket, head, (ws) => this.onConnection(ws, cursor))
  }

  private onConnection(ws: WebSocket, cursor: number | null): void {
    this.stats.connections++
    this.stats.cursors.push(cursor)
    if (cursor !== null && (!Number.isSafeInteger(cursor) || cursor < 0)) {
      ws.send(encodeErrorFrame('InvalidRequest', 'cursor must be a non-negative integer'))
      ws.close(1008, 'InvalidRequest')
      return
    }
    if (cursor !== null && cursor > this.currentSeq) {
      ws.send(encodeErrorFrame('FutureCursor', 'Cursor in the future.'))
      ws.close(1008, 'FutureCursor')
      return
    }
    let start: number
    if (cursor === null) start = this.noCursor === 'live' ? this.history.length : 0
    else {
      start = this.history.length
      while (start > 0 && (this.history[start - 1] as SeqFrame).seq > cursor) start--
    }
    const conn: Conn = { ws, next: start, raw: [], waiting: false, draining: false, busy: false, closed: false }
    this.conns.add(conn)
    this.stats.open = this.conns.size
    ws.on('message', () => {
      // Subscribers must not send; the spec says to ignore it.
    })
    ws.on('error', () => {
      // closes follow errors; nothing else to do
    })
    ws.on('close', () => {
      conn.closed = true
      this.conns.delete(conn)
      this.stats.open = this.conns.size
    })
    this.pump(conn)
  }

  private onRequest(req: IncomingMessage, res: ServerResponse): void {
    void this.route(req, res).catch((err: unknown) => {
      if (!res.headersSent) sendJson(res, 500, { error: 'InternalServerError', message: String(err) })
      else res.destroy()
    })
  }

  private async route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://localhost')
    const q = url.searchParams
    switch (url.pathname) {
      case '/xrpc/_health':
        return sendJson(res, 200, { version: 'fake-pds' })
      case '/xrpc/com.atproto.server.describeServer':
        this.stats.describeCalls++
        return sendJson(res, 200, {
          did: 'did:web:localhost',
          availableUserDomains: ['.test'],
          inviteCodeRequired: false,
          phoneVerificationRequired: false,
          links: {},
          contact: {},
          ...this.opts.describeServer,
        })
      case '/xrpc/com.atproto.sync.getRepoStatus': {
        const state = this.requireRepo(res, q.get('did'))
        if (!state) return
        const out: Record<string, unknown> = { did: state.did, active: state.active }
        if (state.status) out.status = state.status
        if (state.rev && state.active) out.rev = state.rev
        return sendJson(res, 200, out)
      }
      case '/xrpc/com.atproto.repo.describeRepo': {
        this.stats.describeRepoCalls++
        const state = this.requireRepo(res, q.get('repo'))
        if (!state || !this.requireAvailable(res, state)) return
        const collections = [...new Set([...(state.records ?? [])].map((p) => p.slice(0, p.indexOf('/'))))].sort()
        const answer = { did: state.did, handle: 'handle.invalid', didDoc: {}, collections, handleIsCorrect: false }
        if (this.beforeDescribeRepoAnswer) return void this.beforeDescribeRepoAnswer(state.did).then(() => sendJson(res, 200, answer))
        return sendJson(res, 200, answer)
      }
      case '/xrpc/com.atproto.sync.getLatestCommit': {
        const state = this.requireRepo(res, q.get('did'))
        if (!state || !this.requireAvailable(res, state)) return
        if (!state.head || !state.rev) return sendJson(res, 400, { error: 'RepoNotFound', message: `no commit for ${state.did}` })
        return sendJson(res, 200, { cid: state.head, rev: state.rev })
      }
      case '/xrpc/com.atproto.sync.listRepos': {
        const limit = Math.min(Math.max(Number(q.get('limit') ?? 500) || 500, 1), 1000)
        const all = [...this.repos.values()]
        const start = q.has('cursor') ? Number(q.get('cursor')) || 0 : 0
        const page = all.slice(start, start + limit)
        const repos = page.map((s) => {
          const r: Record<string, unknown> = { did: s.did, head: s.head, rev: s.rev, active: s.active }
          if (s.status) r.status = s.status
          return r
        })
        const out: Record<string, unknown> = { repos }
        if (start + limit < all.length) out.cursor = String(start + limit)
        return sendJson(res, 200, out)
      }
      case '/xrpc/com.atproto.sync.getRepo': {
        const did = q.get('did')
        const state = this.requireRepo(res, did)
        if (!state || !this.requireAvailable(res, state)) return
        const car = this.opts.repoProvider ? await this.opts.repoProvider(state.did) : null
        if (!car) return sendJson(res, 400, { error: 'RepoNotFound', message: `no repo for ${state.did}` })
        res.writeHead(200, { 'content-type': 'application/vnd.ipld.car', 'content-length': car.length })
        res.end(car)
        return
      }
      default:
        return sendJson(res, 501, { error: 'MethodNotImplemented', message: `${url.pathname} not implemented` })
    }
  }

  private requireRepo(res: ServerResponse, did: string | null): RepoState | null {
    if (!did) {
      sendJson(res, 400, { error: 'InvalidRequest', message: 'Error: Params must have the property "did"' })
      return null
    }
    const state = this.repos.get(did)
    if (!state) {
      sendJson(res, 400, { error: 'RepoNotFound', message: `Could not find repo for DID: ${did}` })
      return null
    }
    return state
  }

  private requireAvailable(res: ServerResponse, state: RepoState): boolean {
    if (state.active) return true
    const error =
      state.status === 'takendown' ? 'RepoTakendown' : state.status === 'suspended' ? 'RepoSuspended' : state.status === 'deactivated' ? 'RepoDeactivated' : 'RepoNotFound'
    sendJson(res, 400, { error, message: `Repo has been ${state.status ?? 'removed'}` })
    return false
  }
}

function linkString(value: unknown): string | null {
  if (value && typeof value === 'object' && typeof (value as { $link?: unknown }).$link === 'string') return (value as { $link: string }).$link
  return null
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body)
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text) })
  res.end(text)
}

function listen(server: Server, port: number, host: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error) => reject(err)
    server.once('error', onError)
    server.listen(port, host, () => {
      server.off('error', onError)
      resolve()
    })
  })
}
