/**
 * The admin JSON API under /admin/api/ and the com.atproto.admin subject-status
 * methods, all behind Basic auth. Thin: validation and translation only; the
 * work is done by AdminControls.
 */
import { isValidDid } from '../../atproto/syntax.js'
import type { HttpServer, RequestContext } from '../http-server.js'
import { invalidRequest, XrpcError } from '../xrpc-error.js'
import type { AdminAuth } from './auth.js'
import { AdminError, type AdminControls } from './controls.js'

type Body = Record<string, unknown>

function bodyOf(ctx: RequestContext): Body {
  if (ctx.body === undefined) return {}
  if (typeof ctx.body !== 'object' || ctx.body === null || Array.isArray(ctx.body)) throw invalidRequest('body must be a JSON object')
  return ctx.body as Body
}

function str(body: Body, name: string): string {
  const v = body[name]
  if (typeof v !== 'string' || !v.trim()) throw invalidRequest(`"${name}" (string) is required`)
  return v.trim()
}

function did(value: string): string {
  if (!isValidDid(value)) throw invalidRequest(`not a valid DID: ${value}`)
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
  on('POST', 'hosts', async (ctx) => ({ ok: true, ...(await controls.addHost(str(bodyOf(ctx), 'hostname'))) }))
  on('POST', 'hosts/block', async (ctx) => (await controls.blockHost(str(bodyOf(ctx), 'hostname')), ok))
  on('POST', 'hosts/unblock', async (ctx) => (await controls.unblockHost(str(bodyOf(ctx), 'hostname')), ok))
  on('POST', 'hosts/limit', async (ctx) => {
    const body = bodyOf(ctx)
    const limit = body.accountLimit
    if (typeof limit !== 'number' || !Number.isSafeInteger(limit) || limit < 0) throw invalidRequest('"accountLimit" must be a non-negative integer')
    await controls.setHostAccountLimit(str(body, 'hostname'), limit)
    return ok
  })
  on('POST', 'hosts/lenient', async (ctx) => {
    const body = bodyOf(ctx)
    const lenient = body.lenient
    if (lenient !== null && typeof lenient !== 'boolean') throw invalidRequest('"lenient" must be true, false or null (follow the global setting)')
    await controls.setHostLenient(str(body, 'hostname'), lenient)
    return ok
  })
  on('GET', 'domains', async () => ({ domains: await controls.listDomainBans() }))
  on('POST', 'domains/ban', async (ctx) => (await controls.banDomain(str(bodyOf(ctx), 'domain')), ok))
  on('POST', 'domains/unban', async (ctx) => (await controls.unbanDomain(str(bodyOf(ctx), 'domain')), ok))
  on('GET', 'accounts', async (ctx) => {
    const value = ctx.params.get('did')
    if (!value) throw invalidRequest('"did" query parameter is required')
    const account = await controls.account(did(value))
    if (!account) throw new XrpcError(404, 'RepoNotFound', `account not known to this relay: ${value}`)
    return account
  })
  on('POST', 'accounts/takedown', async (ctx) => (await controls.takedown(did(str(bodyOf(ctx), 'did'))), ok))
  on('POST', 'accounts/restore', async (ctx) => (await controls.restore(did(str(bodyOf(ctx), 'did'))), ok))
  on('GET', 'takedowns', async () => ({ dids: await controls.listTakedowns() }))
  on('GET', 'consumers', async () => ({ consumers: controls.consumers() }))
  on('GET', 'activity', async () => controls.activity())
  on('GET', 'settings', async () => controls.settings())
  on('POST', 'settings', async (ctx) => {
    const body = bodyOf(ctx)
    const change: { requestCrawlEnabled?: boolean; newHostsPerDay?: number } = {}
    if ('requestCrawlEnabled' in body) {
      if (typeof body.requestCrawlEnabled !== 'boolean') throw invalidRequest('"requestCrawlEnabled" must be a boolean')
      change.requestCrawlEnabled = body.requestCrawlEnabled
    }
    if ('newHostsPerDay' in body) {
      const n = body.newHostsPerDay
      if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 0) throw invalidRequest('"newHostsPerDay" must be a non-negative integer')
      change.newHostsPerDay = n
    }
    return controls.updateSettings(change)
  })

  const dispatch = (method: 'GET' | 'POST') => async (ctx: RequestContext) => {
    auth.require(ctx.req)
    const route = routes.get(`${method} ${ctx.url.pathname.replace(/\/+$/, '')}`)
    if (!route) throw new XrpcError(404, 'NotFound', `no admin route ${method} ${ctx.url.pathname}`)
    return { json: await run(() => route(ctx)) }
  }
  http.routePrefix('GET', '/admin/api/', dispatch('GET'))
  http.routePrefix('POST', '/admin/api/', dispatch('POST'))

  // com.atproto.admin subject status for repo takedowns (the lexicon PDS admins already use).
  http.query('com.atproto.admin.getSubjectStatus', async ({ req, params }) => {
    auth.require(req)
    const subject = params.get('did')
    if (!subject) throw invalidRequest('Params must have the property "did" (this relay tracks repo subjects only)')
    const account = await controls.account(did(subject))
    if (!account) throw new XrpcError(404, 'NotFound', `subject not found: ${subject}`)
    return { json: subjectStatus(account.did, account.localStatus === 'takendown') }
  })
  http.procedure('com.atproto.admin.updateSubjectStatus', async ({ req, body }) => {
    auth.require(req)
    const input = (body ?? {}) as { subject?: { $type?: string; did?: unknown }; takedown?: { applied?: unknown } }
    const subject = input.subject
    if (!subject || typeof subject.did !== 'string' || (subject.$type && subject.$type !== 'com.atproto.admin.defs#repoRef'))
      throw invalidRequest('subject must be a com.atproto.admin.defs#repoRef {did}')
    const target = did(subject.did)
    if (input.takedown && typeof input.takedown.applied === 'boolean') {
      await run(() => (input.takedown!.applied ? controls.takedown(target) : controls.restore(target)))
    }
    const account = await controls.account(target)
    return { json: subjectStatus(target, account?.localStatus === 'takendown') }
  })
}

function subjectStatus(did: string, takendown: boolean) {
  return { subject: { $type: 'com.atproto.admin.defs#repoRef', did }, takedown: { applied: takendown } }
}
