/**
 * One lightweight fake PDS on a loopback port, cheap enough to run a thousand
 * per process (test/helpers/fake-pds.ts keeps every frame, binds ::1 too and
 * runs one WebSocketServer per host): a bounded ring of recent frames (what a
 * relay reconnecting with a cursor gets replayed), live fan-out to its
 * subscribers with backpressure, and the few HTTP endpoints a relay calls
 * (describeServer, getRepoStatus, getLatestCommit, describeRepo).
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { Duplex } from 'node:stream'
import type { WebSocket, WebSocketServer } from 'ws'
import { cidToString } from '../../src/atproto/cid.js'
import { encodeEventFrame, encodeInfoFrame, type PdsEvent } from '../../test/helpers/frames.js'
import type { FastAccount } from './fast-repo.js'

const HIGH_WATER = 4 * 1024 * 1024

interface Sub {
  ws: WebSocket
  /** Next seq to send. */
  next: number
  waiting: boolean
}

export class HostServer {
  readonly hostname: string
  private seq = 0
  private readonly ring: Uint8Array[] = []
  /** seq of ring[0]. */
  private ringStart = 1
  private readonly subs = new Set<Sub>()
  readonly accounts = new Map<string, FastAccount>()
  framesSent = 0
  connections = 0

  private constructor(
    readonly port: number,
    private readonly server: Server,
    private readonly ringMax: number,
  ) {
    this.hostname = `localhost:${port}`
  }

  static async start(port: number, wss: WebSocketServer, ringMax: number): Promise<HostServer> {
    const server = createServer()
    server.keepAliveTimeout = 60_000
    const host = new HostServer(port, server, ringMax)
    server.on('request', (req, res) => host.onRequest(req, res))
    server.on('upgrade', (req, socket, head) => host.onUpgrade(wss, req, socket as Duplex, head as Buffer))
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(port, '127.0.0.1', () => resolve())
    })
    return host
  }

  get open(): number {
    return this.subs.size
  }
  get currentSeq(): number {
    return this.seq
  }

  /** Frames the slowest subscriber has yet to get (the whole ring when nobody is subscribed). */
  backlog(): number {
    if (this.subs.size === 0) return this.ring.length
    let n = 0
    // unsent frames plus what sits in the socket's user-space buffer (~1.6 KB a frame)
    for (const s of this.subs) n = Math.max(n, this.seq + 1 - Math.max(s.next, this.ringStart) + Math.ceil(s.ws.bufferedAmount / 1600))
    return n
  }

  /** Sequences, stores and sends events; returns the seq of the last one. */
  publish(events: PdsEvent[]): number {
    for (const e of events) {
      this.seq++
      this.ring.push(encodeEventFrame(e, this.seq))
    }
    const excess = this.ring.length - this.ringMax
    if (excess > 0) {
      this.ring.splice(0, excess)
      this.ringStart += excess
    }
    for (const s of this.subs) this.pump(s)
    return this.seq
  }

  private pump(s: Sub): void {
    if (s.waiting) return
    if (s.next < this.ringStart) s.next = this.ringStart
    while (s.next <= this.seq) {
      if (s.ws.bufferedAmount > HIGH_WATER) {
        s.waiting = true
        setTimeout(() => {
          s.waiting = false
          if (this.subs.has(s)) this.pump(s)
        }, 20)
        return
      }
      s.ws.send(this.ring[s.next - this.ringStart]!)
      s.next++
      this.framesSent++
    }
  }

  private onUpgrade(wss: WebSocketServer, req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const url = new URL(req.url ?? '/', 'http://x')
    if (url.pathname !== '/xrpc/com.atproto.sync.subscribeRepos') {
      socket.destroy()
      return
    }
    const raw = url.searchParams.get('cursor')
    wss.handleUpgrade(req, socket, head, (ws) => {
      this.connections++
      const cursor = raw === null ? null : Number(raw)
      const sub: Sub = { ws, next: cursor === null ? this.seq + 1 : cursor + 1, waiting: false }
      if (cursor !== null && cursor > this.seq) {
        ws.send(encodeInfoFrame('FutureCursor'))
        ws.close(1000)
        return
      }
      if (cursor !== null && cursor + 1 < this.ringStart) ws.send(encodeInfoFrame('OutdatedCursor', 'cursor older than this host keeps'))
      this.subs.add(sub)
      ws.on('close', () => this.subs.delete(sub))
      ws.on('error', () => this.subs.delete(sub))
      this.pump(sub)
    })
  }

  private onRequest(req: IncomingMessage, res: ServerResponse): void {
    const url = new URL(req.url ?? '/', 'http://x')
    const json = (status: number, body: unknown) => {
      const text = JSON.stringify(body)
      res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) })
      res.end(text)
    }
    const account = () => {
      const did = url.searchParams.get('did') ?? url.searchParams.get('repo') ?? ''
      const a = this.accounts.get(did)
      if (!a || !a.created) json(400, { error: 'RepoNotFound', message: `no repo ${did}` })
      return a?.created ? a : undefined
    }
    switch (url.pathname) {
      case '/xrpc/com.atproto.server.describeServer':
        return json(200, { did: `did:web:localhost%3A${this.port}`, availableUserDomains: ['.test'], inviteCodeRequired: false })
      case '/xrpc/com.atproto.sync.getRepoStatus': {
        const a = account()
        if (a) json(200, { did: a.did, active: a.active, ...(a.active ? { rev: a.rev } : { status: 'deactivated' }) })
        return
      }
      case '/xrpc/com.atproto.sync.getLatestCommit': {
        const a = account()
        if (a) json(200, { cid: cidToString(a.headCid!), rev: a.rev })
        return
      }
      case '/xrpc/com.atproto.repo.describeRepo': {
        const a = account()
        if (a) json(200, { did: a.did, handle: a.handle, handleIsCorrect: true, didDoc: {}, collections: a.collections })
        return
      }
      default:
        return json(404, { error: 'MethodNotImplemented' })
    }
  }

  async close(): Promise<void> {
    for (const s of this.subs) s.ws.terminate()
    this.subs.clear()
    await new Promise<void>((resolve) => {
      this.server.close(() => resolve())
      this.server.closeAllConnections()
    })
  }
}
