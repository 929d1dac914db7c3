/**
 * The splitter's sync API: every com.atproto.sync query a relay answers, and
 * requestCrawl / notifyOfUpdate, forwarded to the upstream relay the splitter
 * follows. Answers come back as the upstream gave them (status, type, body);
 * redirects are passed through, never followed (getRepo's 302 to the PDS goes
 * to the client). listRepos and listHosts answers are reused for a short while
 * (many consumers bootstrap at once). Admin routes are not forwarded at all.
 *
 * Outbound requests go straight through undici, not net/http-fetch.ts behind
 * the SSRF guard: the upstream is the operator's own configuration, not a
 * name a stranger chose, and may well be a private or loopback address.
 * Each exchange is still bounded in time and body size.
 */
import type { IncomingHttpHeaders } from 'node:http'
import { request } from 'undici'
import type { Logger } from 'pino'
import { XrpcError } from '../atproto/xrpc-error.js'
import type { HttpServer, RequestContext } from '../api/http-server.js'

/** The sync queries a relay answers (src/api/sync-queries.ts), plus listReposByCollection. */
export const PROXIED_QUERIES = [
  'getBlob',
  'getBlocks',
  'getCheckout',
  'getCommitPath',
  'getHead',
  'getHostStatus',
  'getLatestCommit',
  'getRecord',
  'getRepo',
  'getRepoStatus',
  'listBlobs',
  'listHosts',
  'listRepos',
  'listReposByCollection',
].map((name) => `com.atproto.sync.${name}`)

const CACHED = new Set(['com.atproto.sync.listRepos', 'com.atproto.sync.listHosts'])
/** Largest upstream answer relayed (a relay's answers are small; getRepo is a redirect). */
export const MAX_PROXY_BODY_BYTES = 16 * 1024 * 1024
const MAX_CACHE_ENTRIES = 1_000
/** Response headers passed back to the client; hop-by-hop and connection headers are not. */
const PASSED_HEADERS = ['content-type', 'location', 'cache-control', 'retry-after', 'ratelimit-limit', 'ratelimit-remaining', 'ratelimit-reset', 'ratelimit-policy']

export interface ProxyOptions {
  /** The upstream relay currently followed (https://, wss://, http:// or ws://). */
  upstream: () => string
  timeoutMs: number
  listCacheMs: number
  userAgent: string
  /** The per-client requestCrawl rate (ClientLimits.admitCrawl). */
  admitCrawl?: (ctx: RequestContext, nsid: string) => void
  logger: Logger
}

interface Answer {
  status: number
  headers: Record<string, string>
  body: Buffer
}

/** `https://host[:port][/path]` for a relay given as https://, wss://, http:// or ws://. */
export function httpBase(base: string): string {
  const u = new URL(base)
  u.protocol = u.protocol === 'https:' || u.protocol === 'wss:' ? 'https:' : 'http:'
  u.search = ''
  return u.toString().replace(/\/+$/, '')
}

export class SyncProxy {
  private readonly cache = new Map<string, { at: number; answer: Promise<Answer> }>()

  constructor(private readonly opts: ProxyOptions) {}

  register(http: HttpServer): void {
    for (const nsid of PROXIED_QUERIES) http.query(nsid, (ctx) => this.answer(ctx, nsid, 'GET'))
    for (const nsid of ['com.atproto.sync.requestCrawl', 'com.atproto.sync.notifyOfUpdate']) {
      http.procedure(
        nsid,
        (ctx) => {
          this.opts.admitCrawl?.(ctx, nsid)
          return this.answer(ctx, nsid, ctx.req.method === 'POST' ? 'POST' : 'GET')
        },
        { allowGet: true },
      )
    }
  }

  private async answer(ctx: RequestContext, nsid: string, method: 'GET' | 'POST'): Promise<undefined> {
    const path = `/xrpc/${nsid}${ctx.url.search}`
    // Appended like any proxy, so an upstream that trusts this splitter's header can limit per client.
    const forwardedFor = [ctx.req.headers['x-forwarded-for'], ctx.req.socket.remoteAddress].filter(Boolean).join(', ')
    const answer = method === 'GET' && CACHED.has(nsid) ? await this.cached(path, forwardedFor) : await this.forward(path, method, forwardedFor, ctx.body)
    ctx.res.writeHead(answer.status, { ...answer.headers, 'content-length': String(answer.body.length) })
    ctx.res.end(answer.body)
    return undefined
  }

  private cached(path: string, forwardedFor: string): Promise<Answer> {
    const now = Date.now()
    const key = `${this.opts.upstream()} ${path}`
    const hit = this.cache.get(key)
    if (hit !== undefined && now - hit.at < this.opts.listCacheMs) return hit.answer
    // Concurrent misses share one upstream request; only 200s stay cached.
    const answer = this.forward(path, 'GET', forwardedFor, undefined)
    this.cache.delete(key)
    this.cache.set(key, { at: now, answer })
    answer.then(
      (a) => {
        if (a.status !== 200) this.forget(key, answer)
      },
      () => this.forget(key, answer),
    )
    while (this.cache.size > MAX_CACHE_ENTRIES) this.cache.delete(this.cache.keys().next().value as string)
    return answer
  }

  private forget(key: string, answer: Promise<Answer>): void {
    if (this.cache.get(key)?.answer === answer) this.cache.delete(key)
  }

  private async forward(path: string, method: 'GET' | 'POST', forwardedFor: string, body: unknown): Promise<Answer> {
    const url = httpBase(this.opts.upstream()) + path
    const headers: Record<string, string> = { accept: 'application/json, */*', 'user-agent': this.opts.userAgent }
    if (forwardedFor) headers['x-forwarded-for'] = forwardedFor
    let payload: string | undefined
    if (method === 'POST') {
      headers['content-type'] = 'application/json'
      payload = JSON.stringify(body ?? {})
    }
    const signal = AbortSignal.timeout(this.opts.timeoutMs)
    try {
      const res = await request(url, {
        method,
        headers,
        ...(payload !== undefined ? { body: payload } : {}),
        // Never followed: a redirect goes back to the client as it is.
        maxRedirections: 0,
        headersTimeout: this.opts.timeoutMs,
        bodyTimeout: this.opts.timeoutMs,
        signal,
      })
      const chunks: Buffer[] = []
      let size = 0
      for await (const chunk of res.body as AsyncIterable<Buffer>) {
        size += chunk.length
        if (size > MAX_PROXY_BODY_BYTES) {
          res.body.destroy()
          throw new XrpcError(502, 'UpstreamFailure', `the upstream relay's answer is larger than ${MAX_PROXY_BODY_BYTES} bytes`)
        }
        chunks.push(chunk)
      }
      return { status: res.statusCode, headers: passedHeaders(res.headers), body: Buffer.concat(chunks) }
    } catch (err) {
      if (err instanceof XrpcError) throw err
      if (signal.aborted) throw new XrpcError(504, 'UpstreamTimeout', `the upstream relay did not answer within ${this.opts.timeoutMs} ms`)
      this.opts.logger.warn({ err, upstream: this.opts.upstream(), path }, 'forwarding to the upstream relay failed')
      throw new XrpcError(502, 'UpstreamFailure', `the upstream relay could not be reached: ${(err as Error).message}`)
    }
  }
}

function passedHeaders(headers: IncomingHttpHeaders): Record<string, string> {
  const out: Record<string, string> = {}
  for (const name of PASSED_HEADERS) {
    const value = headers[name]
    if (typeof value === 'string') out[name] = value
  }
  return out
}
