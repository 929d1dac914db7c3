/**
 * `com.atproto.sync.requestCrawl` (POST `{hostname}`), its deprecated alias
 * `notifyOfUpdate`, and the 2023 GET `?hostname=` form of both.
 */
import type { HttpServer, RequestContext } from '../api/http-server.js'
import { invalidRequest } from '../api/xrpc-error.js'
import type { Admission } from './admission.js'

export function registerCrawlRoutes(http: HttpServer, admission: Pick<Admission, 'requestCrawl'>): void {
  const handler = async (ctx: RequestContext) => {
    await admission.requestCrawl(hostnameOf(ctx))
    return undefined
  }
  http.procedure('com.atproto.sync.requestCrawl', handler, { allowGet: true })
  http.procedure('com.atproto.sync.notifyOfUpdate', handler, { allowGet: true })
}

function hostnameOf(ctx: RequestContext): string {
  const fromBody = typeof ctx.body === 'object' && ctx.body !== null ? (ctx.body as { hostname?: unknown }).hostname : undefined
  const hostname = fromBody ?? ctx.params.get('hostname') ?? undefined
  if (hostname === undefined || hostname === null) throw invalidRequest('hostname is required')
  if (typeof hostname !== 'string') throw invalidRequest('hostname must be a string')
  return hostname
}
