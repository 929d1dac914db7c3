/**
 * The admin JSON API under /admin/api/ and the com.atproto.admin subject-status
 * methods, all behind Basic auth; every write must also come from the operator
 * (operator-only.ts). Thin: validation and translation only; the work is done
 * by AdminControls.
 */
import type { Guard, HttpServer, RequestContext } from '../http-server.js'
import { Params, type Format } from '../../http/params.js'
import { invalidRequest, XrpcError } from '../../atproto/xrpc-error.js'
import type { AdminAuth } from './auth.js'
import { AdminError, type AdminControls } from './controls.js'
import { requireOperatorWrite } from './operator-only.js'

const bodyOf = (ctx: RequestContext) => Params.body(ctx.body)

/** A required, non-blank string member of the body, trimmed. */
function str(ctx: RequestContext, name: string, format: Format = 'hostname'): string {
  const value = bodyOf(ctx).required(name, format).trim()
  if (!value) throw invalidRequest(`Parameter "${name}" must not be empty`)
  return value
}

/** AdminError → XRPC error; everything else is left to the server's 500 path. */
async function run<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn()
  } catch (err) {
    if (err instanceof AdminError) throw new XrpcError(err.status, err.error, err.message)
    throw err
  }
}

export function registerAdminRoutes(http: HttpServer, auth: AdminAuth, controls: AdminControls): void {
  type Route = (ctx: RequestContext) => Promise<unknown>
  const routes = new Map<string, Route>()
  const on = (method: 'GET' | 'POST', path: string, fn: Route) => routes.set(`${method} /admin/api/${path}`, fn)
  const ok = { ok: true }

  on('GET', 'hosts', async () => ({ hosts: await controls.listHosts() }))
  on('POST', 'hosts', async (ctx) => ({ ok: true, ...(await controls.addHost(str(ctx, 'hostname'))) }))
  on('POST', 'hosts/block', async (ctx) => (await controls.blockHost(str(ctx, 'hostname')), ok))
  on('POST', 'hosts/unblock', async (ctx) => (await controls.unblockHost(str(ctx, 'hostname')), ok))
  on('POST', 'hosts/limit', async (ctx) => {
    const limit = bodyOf(ctx).integer('accountLimit', { min: 0, max: Number.MAX_SAFE_INTEGER })
    await controls.setHostAccountLimit(str(ctx, 'hostname'), limit)
    return ok
  })
  on('POST', 'hosts/lenient', async (ctx) => {
    // null: follow the global setting
    const lenient = bodyOf(ctx).nullableBoolean('lenient')
    await controls.setHostLenient(str(ctx, 'hostname'), lenient)
    return ok
  })
  on('GET', 'domains', async () => ({ domains: await controls.listDomainBans() }))
  on('POST', 'domains/ban', async (ctx) => (await controls.banDomain(str(ctx, 'domain')), ok))
  on('POST', 'domains/unban', async (ctx) => (await controls.unbanDomain(str(ctx, 'domain')), ok))
  on('GET', 'accounts', async (ctx) => {
    const did = Params.query(ctx.params).required('did', 'did')
    const account = await controls.account(did)
    if (!account) throw new XrpcError(404, 'RepoNotFound', `account not known to this relay: ${did}`)
    return account
  })
  on('POST', 'accounts/takedown', async (ctx) => (await controls.takedown(bodyOf(ctx).required('did', 'did')), ok))
  on('POST', 'accounts/restore', async (ctx) => (await controls.restore(bodyOf(ctx).required('did', 'did')), ok))
  on('GET', 'takedowns', async () => ({ dids: await controls.listTakedowns() }))
  on('GET', 'consumers', async () => ({ consumers: controls.consumers() }))
  on('GET', 'activity', async () => controls.activity())
  on('GET', 'settings', async () => controls.settings())
  on('GET', 'collections', async () => (controls.collections ? controls.collections() : { backfill: null }))
  on('POST', 'settings', async (ctx) => {
    const body = bodyOf(ctx)
    const change: { requestCrawlEnabled?: boolean; newHostsPerDay?: number } = {}
    const enabled = body.boolean('requestCrawlEnabled')
    if (enabled !== undefined) change.requestCrawlEnabled = enabled
    if (body.has('newHostsPerDay')) change.newHostsPerDay = body.integer('newHostsPerDay', { min: 0, max: Number.MAX_SAFE_INTEGER })
    return controls.updateSettings(change)
  })

  // Checked before the body is read: a forged or unauthenticated request costs nothing.
  const read: Guard = (req) => auth.require(req)
  const write: Guard = (req) => {
    requireOperatorWrite(req)
    auth.require(req)
  }

  const dispatch = (method: 'GET' | 'POST') => async (ctx: RequestContext) => {
    const route = routes.get(`${method} ${ctx.url.pathname.replace(/\/+$/, '')}`)
    if (!route) throw new XrpcError(404, 'NotFound', `no admin route ${method} ${ctx.url.pathname}`)
    return { json: await run(() => route(ctx)) }
  }
  http.routePrefix('GET', '/admin/api/', dispatch('GET'), { guard: read })
  http.routePrefix('POST', '/admin/api/', dispatch('POST'), { guard: write })

  // com.atproto.admin subject status for repo takedowns (the lexicon PDS admins already use).
  // (this relay tracks repo subjects only: `did`, not uri/blob)
  http.query('com.atproto.admin.getSubjectStatus', async ({ req, params }) => {
    auth.require(req)
    const subject = Params.query(params).required('did', 'did')
    const account = await controls.account(subject)
    if (!account) throw new XrpcError(404, 'NotFound', `subject not found: ${subject}`)
    return { json: subjectStatus(account.did, account.localStatus === 'takendown') }
  })
  http.procedure(
    'com.atproto.admin.updateSubjectStatus',
    async ({ body }) => {
      const input = Params.body(body)
      const subject = input.object('subject')
      const type = subject.optional('$type')
      if (type !== undefined && type !== 'com.atproto.admin.defs#repoRef') throw invalidRequest('subject must be a com.atproto.admin.defs#repoRef {did}')
      const target = subject.required('did', 'did')
      const applied = input.has('takedown') ? input.object('takedown').boolean('applied') : undefined
      if (applied !== undefined) await run(() => (applied ? controls.takedown(target) : controls.restore(target)))
      const account = await controls.account(target)
      return { json: subjectStatus(target, account?.localStatus === 'takendown') }
    },
    { guard: write },
  )
}

function subjectStatus(did: string, takendown: boolean) {
  return { subject: { $type: 'com.atproto.admin.defs#repoRef', did }, takedown: { applied: takendown } }
}
