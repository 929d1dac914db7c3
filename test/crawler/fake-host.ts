/**
 * A loopback fake PDS for crawler tests: describeServer over HTTP and a
 * subscribeRepos WebSocket endpoint whose behaviour each test scripts.
 */
import { createServer, type IncomingMessage, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import pino from 'pino'
import { Registry } from 'prom-client'
import { WebSocketServer, type WebSocket } from 'ws'
import { encodeMessageFrame, type MessageFrame } from '../../src/atproto/frame.js'
import type { CrawlerOptions } from '../../src/crawler/crawler.js'
import type { IngestSink, UpstreamHost } from '../../src/crawler/types.js'
import { HostStats } from '../../src/stats/host-stats.js'
import type { UpstreamTicket } from '../../src/sequencer/host-cursors.js'
import { waitUntil } from '../helpers/wait.js'

export const silentLogger = pino({ level: 'silent' })

/**
 * The crawler settings the crawler tests share: loopback hosts allowed, limits high enough that
 * tests not about them stay under (100k accounts = 150 events/s), fast redials, no log.
 */
export const TEST_CRAWLER_SETTINGS = {
  allowInsecureHosts: true,
  trustedDomains: [],
  defaultAccountLimit: 100_000,
  trustedAccountLimit: 10_000_000,
  newHostsPerDay: 1_000,
  disableRequestCrawl: false,
  futureCursorPolicy: 'reset',
  backoff: { baseMs: 20, maxMs: 200 },
  logger: silentLogger,
} satisfies Partial<CrawlerOptions>

export interface FakeConnection {
  ws: WebSocket
  /** The `cursor` query parameter, or null when absent. */
  cursor: string | null
  userAgent: string | undefined
}

export class FakeHost {
  /** Server header on every response (describeServer and the upgrade). */
  serverHeader = 'fake-pds/0.1'
  describeStatus = 200
  describeBody = '{"did":"did:web:fake.test","availableUserDomains":[]}'
  /** Refuse the upgrade with this HTTP status instead of accepting it. */
  rejectUpgradeWith: number | null = null
  readonly connections: FakeConnection[] = []
  describeCalls = 0
  onConnection: (conn: FakeConnection) => void = () => {}
  private server: Server
  private readonly wss = new WebSocketServer({ noServer: true, perMessageDeflate: false })
  port = 0

  private constructor() {
    this.server = this.createServer()
    this.wss.on('headers', (headers) => headers.push(`Server: ${this.serverHeader}`))
  }

  static async start(port = 0): Promise<FakeHost> {
    const host = new FakeHost()
    await host.listen(port)
    return host
  }

  get hostname(): string {
    return `localhost:${this.port}`
  }

  /** Resolves once `n` connections in total have been accepted. */
  async waitForConnections(n: number, timeoutMs = 10_000): Promise<FakeConnection> {
    await waitUntil(() => this.connections.length >= n, () => `${n} connections (got ${this.connections.length})`, timeoutMs)
    return this.connections[n - 1] as FakeConnection
  }

  /** Stops listening and drops every client (the port can be listened on again). */
  async close(): Promise<void> {
    for (const c of this.wss.clients) c.terminate()
    await new Promise<void>((resolve) => {
      this.server.close(() => resolve())
      this.server.closeAllConnections()
    })
  }

  /** Listens again on the same port after close(). */
  async reopen(): Promise<void> {
    this.server = this.createServer()
    await this.listen(this.port)
  }

  async destroy(): Promise<void> {
    if (this.server.listening) await this.close()
    this.wss.close()
  }

  private async listen(port: number): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject)
      this.server.listen(port, '127.0.0.1', () => resolve())
    })
    this.port = (this.server.address() as AddressInfo).port
  }

  private createServer(): Server {
    const server = createServer((req, res) => {
      res.setHeader('Server', this.serverHeader)
      if (req.url?.startsWith('/xrpc/com.atproto.server.describeServer')) {
        this.describeCalls++
        res.writeHead(this.describeStatus, { 'Content-Type': 'application/json' })
        res.end(this.describeBody)
        return
      }
      res.writeHead(404)
      res.end()
    })
    server.on('upgrade', (req: IncomingMessage, socket, head) => {
      const url = new URL(req.url ?? '/', 'http://x')
      if (url.pathname !== '/xrpc/com.atproto.sync.subscribeRepos') {
        socket.destroy()
        return
      }
      if (this.rejectUpgradeWith !== null) {
        socket.end(`HTTP/1.1 ${this.rejectUpgradeWith} Nope\r\nServer: ${this.serverHeader}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n`)
        return
      }
      this.wss.handleUpgrade(req, socket, head, (ws) => {
        const conn = { ws, cursor: url.searchParams.get('cursor'), userAgent: req.headers['user-agent'] }
        this.connections.push(conn)
        this.onConnection(conn)
      })
    })
    return server
  }
}

/** A `#commit`-shaped frame (only what the crawler looks at matters: `seq`). */
export function eventFrame(seq: number, t = '#identity'): Uint8Array {
  return encodeMessageFrame(t, { seq, did: 'did:plc:abc', time: '2024-01-01T00:00:00.000Z' })
}

export interface Received {
  hostname: string
  t: string
  seq: number | null
}

/** Records what the crawler hands to ingest; `gate` makes push return a promise (backpressure). */
export class RecordingSink implements IngestSink {
  readonly received: Received[] = []
  gate: Promise<void> | undefined

  /** Tickets handed over, still open (the test decides how they end). */
  readonly tickets: UpstreamTicket[] = []

  push(host: UpstreamHost, frame: MessageFrame, ticket: UpstreamTicket | null): Promise<void> | undefined {
    this.received.push({ hostname: host.hostname, t: frame.t, seq: ticket?.seq ?? null })
    if (ticket !== null) this.tickets.push(ticket)
    return this.gate
  }

  seqs(hostname?: string): (number | null)[] {
    return this.received.filter((r) => hostname === undefined || r.hostname === hostname).map((r) => r.seq)
  }
}

export function newStats(): HostStats {
  return new HostStats(new Registry())
}

