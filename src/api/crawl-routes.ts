/**
 * `com.atproto.sync.requestCrawl` (POST `{hostname}`), its deprecated alias
 * `notifyOfUpdate`, and the 2023 GET `?hostname=` form of both. Each call
 * first passes the per-client requestCrawl rate, then waits for one of the
 * few admission slots (they read the ingest database and probe hosts).
 */
import type { ClientLimits } from './client-limits.js'
import type { HttpServer, RequestContext } from './http-server.js'
import { Params } from '../http/params.js'
import type { QueryGate } from './query-gate.js'
import type { Admission } from '../crawler/admission.js'

export interface CrawlRouteLimits {
  clients: Pick<ClientLimits, 'admitCrawl'>
  gate: QueryGate
}

export function registerCrawlRoutes(http: HttpServer, admission: Pick<Admission, 'requestCrawl'>, limits?: CrawlRouteLimits): void {
  const route = (nsid: string) => async (ctx: RequestContext) => {
    const hostname = hostnameOf(ctx)
    if (!limits) await admission.requestCrawl(hostname)
    else {
      limits.clients.admitCrawl(ctx.req, ctx.res, nsid)
      await limits.gate.run(nsid, () => admission.requestCrawl(hostname))
    }
    return undefined
  }
  http.procedure('com.atproto.sync.requestCrawl', route('com.atproto.sync.requestCrawl'), { allowGet: true })
  http.procedure('com.atproto.sync.notifyOfUpdate', route('com.atproto.sync.notifyOfUpdate'), { allowGet: true })
}

/** The body's `hostname` when given, else the 2023 query parameter. */
function hostnameOf(ctx: RequestContext): string {
  const body = Params.body(ctx.body)
  if (body.has('hostname')) return body.required('hostname', 'hostname')
  return Params.query(ctx.params).required('hostname', 'hostname')
}
