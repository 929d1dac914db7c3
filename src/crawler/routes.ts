/**
 * `com.atproto.sync.requestCrawl` (POST `{hostname}`), its deprecated alias
 * `notifyOfUpdate`, and the 2023 GET `?hostname=` form of both.
 */
import type { HttpServer, RequestContext } from '../api/http-server.js'
import { Params } from '../api/params.js'
import type { Admission } from './admission.js'

export function registerCrawlRoutes(http: HttpServer, admission: Pick<Admission, 'requestCrawl'>): void {
  const handler = async (ctx: RequestContext) => {
    await admission.requestCrawl(hostnameOf(ctx))
    return undefined
  }
  http.procedure('com.atproto.sync.requestCrawl', handler, { allowGet: true })
  http.procedure('com.atproto.sync.notifyOfUpdate', handler, { allowGet: true })
}

/** The body's `hostname` when given, else the 2023 query parameter. */
function hostnameOf(ctx: RequestContext): string {
  const body = Params.body(ctx.body)
  if (body.has('hostname')) return body.required('hostname', 'hostname')
  return Params.query(ctx.params).required('hostname', 'hostname')
}
