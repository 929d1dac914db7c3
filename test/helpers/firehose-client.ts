/**
 * THE firehose test client: a subscribeRepos consumer that decodes and keeps every frame a relay
 * (or a bare sequencer + firehose) sends, for every test that reads a firehose.
 */
import WebSocket from 'ws'
import { decodeFrame } from '../../src/atproto/frame.js'
import { waitUntil } from './wait.js'

/** A decoded op-1 frame. */
export interface FirehoseEvent {
  /** undefined only on #info */
  seq: number
  t: string
  /** `repo` of a #commit, `did` of the others */
  did: string
  body: Record<string, unknown>
  /** Date.now() when the frame arrived. */
  receivedAt: number
}

/** Every frame in order, in brief: what a test compares whole. */
export interface FrameSummary {
  op: number
  t?: string
  seq?: number
  /** #info name */
  name?: string
  /** error frame name */
  error?: string
}

/** Anything with the relay's API address (a `Relay`), or a full subscribeRepos URL. */
export type FirehoseTarget = { apiAddress: { port: number } } | string

export interface FirehoseClientOptions {
  /** null or undefined: no cursor (live only); 0 replays the whole log. */
  cursor?: number | string | null
  userAgent?: string
  /** Keep only `frames` (no decoded bodies in `events`): for tests that measure the process's memory. */
  summariesOnly?: boolean
}

export class FirehoseClient {
  private static readonly open = new Set<FirehoseClient>()

  readonly ws: WebSocket
  readonly events: FirehoseEvent[] = []
  readonly frames: FrameSummary[] = []
  /** Error frames (`name: message`), text frames, undecodable frames, socket errors. */
  readonly errors: string[] = []
  readonly opened: Promise<void>
  readonly closed: Promise<{ code: number; reason: string }>
  /** Resolves when the handshake is refused with an HTTP status. */
  readonly rejected: Promise<{ status: number; body: string }>
  private isShut = false
  private readonly summariesOnly: boolean

  constructor(target: FirehoseTarget, opts: FirehoseClientOptions = {}) {
    this.summariesOnly = opts.summariesOnly ?? false
    const base = typeof target === 'string' ? target : `ws://127.0.0.1:${target.apiAddress.port}/xrpc/com.atproto.sync.subscribeRepos`
    const url = opts.cursor === undefined || opts.cursor === null ? base : `${base}?cursor=${opts.cursor}`
    this.ws = new WebSocket(url, { perMessageDeflate: false, headers: { 'User-Agent': opts.userAgent ?? 'atrelay-test-consumer/1.0' } })
    this.ws.on('message', (data: Buffer, isBinary: boolean) => this.onMessage(data, isBinary))
    FirehoseClient.open.add(this)
    let refuse: (err: Error) => void = () => undefined
    this.opened = new Promise((resolve, reject) => {
      refuse = reject
      this.ws.once('open', () => resolve())
      this.ws.once('error', reject)
    })
    this.opened.catch(() => undefined)
    this.closed = new Promise((resolve) =>
      this.ws.once('close', (code, reason) => {
        this.isShut = true
        FirehoseClient.open.delete(this)
        resolve({ code, reason: reason.toString() })
      }),
    )
    this.rejected = new Promise((resolve) => {
      this.ws.once('unexpected-response', (_req, res) => {
        let body = ''
        res.setEncoding('utf8')
        res.on('data', (chunk: string) => (body += chunk))
        res.on('end', () => {
          const status = res.statusCode ?? 0
          // With this listener ws leaves the refused handshake to us: fail `opened` as ws would, then drop it.
          refuse(new Error(`Unexpected server response: ${status}`))
          resolve({ status, body })
          this.ws.terminate()
        })
      })
    })
    this.ws.on('error', (err) => this.errors.push(`socket: ${err.message}`))
  }

  /** Opens a client on `relay` and waits for the handshake; cursor 0 replays the whole log first. */
  static async connect(relay: FirehoseTarget, cursor: number | null = 0, opts: Omit<FirehoseClientOptions, 'cursor'> = {}): Promise<FirehoseClient> {
    const client = new FirehoseClient(relay, { ...opts, cursor })
    await client.opened
    return client
  }

  /** Closes every client still open (a test file's afterAll). */
  static async closeAll(): Promise<void> {
    await Promise.all([...FirehoseClient.open].map((c) => c.close()))
  }

  private onMessage(data: Buffer, isBinary: boolean): void {
    if (!isBinary) {
      this.errors.push('text frame')
      return
    }
    let frame: ReturnType<typeof decodeFrame>
    try {
      frame = decodeFrame(new Uint8Array(data))
    } catch (err) {
      this.errors.push(`undecodable: ${(err as Error).message}`)
      return
    }
    if (frame.op === -1) {
      this.frames.push({ op: -1, error: frame.error })
      this.errors.push(`${frame.error}: ${frame.message ?? ''}`)
      return
    }
    const body = frame.body
    const summary: FrameSummary = { op: 1, t: frame.t }
    if (typeof body.seq === 'number') summary.seq = body.seq
    if (typeof body.name === 'string') summary.name = body.name
    this.frames.push(summary)
    if (this.summariesOnly) return
    const did = (frame.t === '#commit' ? body.repo : body.did) as string
    this.events.push({ seq: body.seq as number, t: frame.t, did, body, receivedAt: Date.now() })
  }

  /** The seqs of the frames that carry one, in arrival order. */
  seqs(): number[] {
    return this.frames.filter((f) => f.seq !== undefined).map((f) => f.seq as number)
  }

  /** The events about `did`, optionally of one type. */
  of(did: string, t?: string): FirehoseEvent[] {
    return this.events.filter((e) => e.did === did && (t === undefined || e.t === t))
  }

  get isClosed(): boolean {
    return this.isShut
  }

  async waitFor(cond: (events: FirehoseEvent[]) => boolean, what: string | (() => string), timeoutMs = 10_000): Promise<void> {
    await waitUntil(() => cond(this.events), what, timeoutMs)
  }

  close(): Promise<{ code: number; reason: string }> {
    if (this.ws.readyState !== WebSocket.CLOSED) this.ws.terminate()
    return this.closed
  }
}
