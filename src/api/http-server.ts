/**
 * The relay's HTTP front: XRPC routing, JSON errors, CORS, the Server header,
 * WebSocket upgrades by path, and a graceful close. No framework: the surface
 * is small and this keeps the request path short.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { Duplex } from 'node:stream'
import type { Logger } from 'pino'
import type { ListenAddress } from '../config.js'
import { isAdminPath } from './admin/operator-only.js'
import { isJsonContentType } from './content-type.js'
import { listenOn } from './listen.js'
import { answerRaw, SERVER_HEADER } from '../http/raw-response.js'
import { XrpcError, invalidRequest } from '../atproto/xrpc-error.js'

export { SERVER_HEADER }
const MAX_JSON_BODY = 64 * 1024
/** Longest request target we read (414 beyond); Node's own 16 KiB header limit (431) covers the rest of the head. */
export const MAX_URL_LENGTH = 8 * 1024

export interface RequestContext {
  req: IncomingMessage
  res: ServerResponse
  url: URL
  params: URLSearchParams
  /** Parsed JSON body of a procedure (POST), or undefined. */
  body: unknown
}

/** What a handler returns: JSON, a redirect, or nothing when it wrote the response itself. */
export type HandlerResult =
  | { json: unknown; status?: number; headers?: Record<string, string> }
  | { redirect: string }
  | { text: string; contentType?: string; status?: number }
  | undefined

export type Handler = (ctx: RequestContext) => Promise<HandlerResult> | HandlerResult
/** Runs before the request body is read; throws an XrpcError to refuse (e.g. auth, the admin operator-only check). */
export type Guard = (req: IncomingMessage) => void
export type UpgradeHandler = (req: IncomingMessage, socket: Duplex, head: Buffer) => void

type Kind = 'query' | 'procedure'

/** Admission control before handlers run (per-client limits: src/api/client-limits.ts). */
export interface RequestGuard {
  /** Before a registered XRPC method's handler: throws an XrpcError to refuse, else returns a release for when it is done. */
  admitXrpc(req: IncomingMessage, res: ServerResponse, nsid: string): () => void
  /** Before a WebSocket endpoint's handler: false when it has answered the socket itself. */
  admitUpgrade(req: IncomingMessage, socket: Duplex, path: string): boolean
}

export class HttpServer {
  private readonly server: Server
  private readonly xrpc = new Map<string, { kind: Kind; handler: Handler; allowGet?: boolean; guard?: Guard }>()
  private readonly routes = new Map<string, Handler>()
  private readonly prefixRoutes: { method: string; prefix: string; handler: Handler; guard?: Guard }[] = []
  private readonly upgrades = new Map<string, UpgradeHandler>()
  private guard: RequestGuard | undefined

  constructor(private readonly logger: Logger) {
    this.server = createServer((req, res) => void this.dispatch(req, res))
    this.server.on('upgrade', (req, socket, head) => this.upgrade(req, socket, head))
    this.server.on('clientError', (err, socket) => answerClientError(err, socket))
  }

  /** A GET XRPC method. */
  query(nsid: string, handler: Handler): void {
    this.xrpc.set(nsid, { kind: 'query', handler })
  }

  /** A POST XRPC method; `allowGet` also accepts the 2023 GET form with query parameters. */
  procedure(nsid: string, handler: Handler, opts: { allowGet?: boolean; guard?: Guard } = {}): void {
    this.xrpc.set(nsid, { kind: 'procedure', handler, allowGet: opts.allowGet ?? false, ...(opts.guard ? { guard: opts.guard } : {}) })
  }

  /** A plain route, e.g. `route('GET', '/')`. */
  route(method: string, path: string, handler: Handler): void {
    this.routes.set(`${method} ${path}`, handler)
  }

  /** Every path under `prefix` (e.g. `/admin/`). */
  routePrefix(method: string, prefix: string, handler: Handler, opts: { guard?: Guard } = {}): void {
    this.prefixRoutes.push({ method, prefix, handler, ...(opts.guard ? { guard: opts.guard } : {}) })
  }

  /** Admission control for XRPC methods and WebSocket endpoints. */
  setGuard(guard: RequestGuard): void {
    this.guard = guard
  }

  /** A WebSocket endpoint. */
  upgradeRoute(path: string, handler: UpgradeHandler): void {
    this.upgrades.set(path, handler)
  }

  /** Every XRPC method registered (queries, procedures and WebSocket subscriptions), for tests and docs. */
  xrpcMethods(): string[] {
    const subscriptions = [...this.upgrades.keys()].filter((p) => p.startsWith('/xrpc/')).map((p) => p.slice('/xrpc/'.length))
    return [...this.xrpc.keys(), ...subscriptions].sort()
  }

  listen(address: ListenAddress): Promise<AddressInfo> {
    return listenOn(this.server, address)
  }

  address(): AddressInfo | null {
    return this.server.address() as AddressInfo | null
  }

  /** Stop accepting, let in-flight requests finish (bounded), then close lingering sockets. */
  async close(graceMs = 5_000): Promise<void> {
    if (!this.server.listening) return
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()))
    this.server.closeIdleConnections()
    const timer = setTimeout(() => this.server.closeAllConnections(), graceMs)
    await closed
    clearTimeout(timer)
  }

  private async dispatch(req: IncomingMessage, res: ServerResponse): Promise<void> {
    res.setHeader('Server', SERVER_HEADER)
    const url = parseTarget(req.url)
    // The public API is open to any page; the admin surface answers no CORS at all, preflights included.
    const cors = url !== undefined && !isAdminPath(url.pathname)
    if (cors) res.setHeader('Access-Control-Allow-Origin', '*')
    try {
      if ((req.url ?? '').length > MAX_URL_LENGTH) throw new XrpcError(414, 'URLTooLong', `request URL longer than ${MAX_URL_LENGTH} bytes`)
      if (!url) throw invalidRequest('malformed request URL')
      if (req.method === 'OPTIONS') {
        if (!cors) throw new XrpcError(403, 'Forbidden', 'the admin API does not answer cross-origin requests')
        res.writeHead(204, {
          'Access-Control-Allow-Methods': 'GET, POST, OPTIONS',
          'Access-Control-Allow-Headers': req.headers['access-control-request-headers'] ?? '*',
          'Access-Control-Max-Age': '86400',
        })
        res.end()
        return
      }
      const result = await this.handle(req, res, url)
      if (!res.headersSent && !res.writableEnded) this.send(res, result)
    } catch (err) {
      this.sendError(res, err, url)
    }
  }

  private async handle(req: IncomingMessage, res: ServerResponse, url: URL): Promise<HandlerResult> {
    const method = req.method ?? 'GET'
    const path = url.pathname
    if (path.startsWith('/xrpc/')) {
      const nsid = path.slice('/xrpc/'.length)
      const entry = this.xrpc.get(nsid)
      if (!entry) {
        if (this.upgrades.has(path)) throw new XrpcError(426, 'InvalidRequest', 'this endpoint needs a WebSocket upgrade')
        throw new XrpcError(501, 'MethodNotImplemented', `method not implemented: ${nsid}`)
      }
      const wanted = entry.kind === 'query' ? 'GET' : 'POST'
      const get = method === 'GET' || method === 'HEAD'
      if (!(method === wanted || (wanted === 'GET' && get) || (entry.allowGet && get)))
        throw invalidRequest(`${nsid} must be called with ${wanted}`)
      entry.guard?.(req)
      const release = this.guard?.admitXrpc(req, res, nsid)
      try {
        const body = method === 'POST' ? await readJsonBody(req) : undefined
        return await entry.handler({ req, res, url, params: url.searchParams, body })
      } finally {
        release?.()
      }
    }
    const exact = this.routes.get(`${method} ${path}`) ?? (method === 'HEAD' ? this.routes.get(`GET ${path}`) : undefined)
    const prefixRoute = exact ? undefined : this.prefixRoutes.find((r) => r.method === method && path.startsWith(r.prefix))
    const handler = exact ?? prefixRoute?.handler
    if (!handler) throw new XrpcError(404, 'NotFound', `no route for ${method} ${path}`)
    prefixRoute?.guard?.(req)
    const body = method === 'POST' && isJsonContentType(req.headers['content-type']) ? await readJsonBody(req) : undefined
    return handler({ req, res, url, params: url.searchParams, body })
  }

  private send(res: ServerResponse, result: HandlerResult): void {
    if (!result) {
      res.writeHead(200)
      res.end()
    } else if ('redirect' in result) {
      res.writeHead(302, { Location: result.redirect })
      res.end()
    } else if ('json' in result) {
      const body = JSON.stringify(result.json)
      res.writeHead(result.status ?? 200, {
        'Content-Type': 'application/json; charset=utf-8',
        'Content-Length': Buffer.byteLength(body),
        ...result.headers,
      })
      res.end(body)
    } else {
      res.writeHead(result.status ?? 200, { 'Content-Type': result.contentType ?? 'text/plain; charset=utf-8' })
      res.end(result.text)
    }
  }

  private sendError(res: ServerResponse, err: unknown, url: URL | undefined): void {
    const xrpc =
      err instanceof XrpcError ? err : new XrpcError(500, 'InternalServerError', 'internal error; see the relay log')
    if (!(err instanceof XrpcError)) this.logger.error({ err, path: url?.pathname }, 'request failed')
    if (res.headersSent) {
      res.destroy()
      return
    }
    const body = JSON.stringify({ error: xrpc.error, message: xrpc.message })
    res.writeHead(xrpc.status, {
      'Content-Type': 'application/json; charset=utf-8',
      'Content-Length': Buffer.byteLength(body),
      ...xrpc.headers,
    })
    res.end(body)
  }

  private upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    // Node drops its own 'error' listener from an upgraded socket; until a handler's WebSocket
    // server adds one (some await the database first), a client's reset would be an uncaught error.
    socket.on('error', () => socket.destroy())
    if ((req.url ?? '').length > MAX_URL_LENGTH) return answerRaw(socket, 414, 'URLTooLong', `request URL longer than ${MAX_URL_LENGTH} bytes`)
    const path = parseTarget(req.url)?.pathname ?? ''
    const handler = this.upgrades.get(path)
    if (!handler) return answerRaw(socket, 404, 'NotFound', `no WebSocket endpoint at ${path}`)
    try {
      if (this.guard && !this.guard.admitUpgrade(req, socket, path)) return
      handler(req, socket, head)
    } catch (err) {
      this.logger.error({ err, path }, 'upgrade failed')
      socket.destroy()
    }
  }
}

function parseTarget(target: string | undefined): URL | undefined {
  try {
    return new URL(target ?? '/', 'http://relay.invalid')
  } catch {
    return undefined
  }
}

/**
 * A request Node's parser refused before any handler ran: answer it properly
 * instead of dropping the socket. Over-long heads are 414 when the request
 * line alone is too long, else 431.
 */
function answerClientError(err: Error & { code?: string; rawPacket?: Buffer }, socket: Duplex): void {
  if (err.code === 'ECONNRESET' || !socket.writable) return void socket.destroy()
  if (err.code === 'HPE_HEADER_OVERFLOW') {
    const lineEnd = err.rawPacket?.indexOf('\r\n') ?? -1
    const requestLine = lineEnd < 0 ? (err.rawPacket?.length ?? 0) : lineEnd
    if (requestLine > MAX_URL_LENGTH) return answerRaw(socket, 414, 'URLTooLong', `request URL longer than ${MAX_URL_LENGTH} bytes`)
    return answerRaw(socket, 431, 'HeadersTooLarge', 'request headers too large')
  }
  if (err.code === 'ERR_HTTP_REQUEST_TIMEOUT') return answerRaw(socket, 408, 'RequestTimeout', 'request not received in time')
  answerRaw(socket, 400, 'InvalidRequest', `malformed HTTP request (${err.code ?? 'parse error'})`)
}

async function readJsonBody(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length
    if (size > MAX_JSON_BODY) throw new XrpcError(413, 'PayloadTooLarge', `request body over ${MAX_JSON_BODY} bytes`)
    chunks.push(chunk)
  }
  if (size === 0) return undefined
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8'))
  } catch {
    throw invalidRequest('request body is not valid JSON')
  }
}
