/**
 * Admin authentication: HTTP Basic `admin:<RELAY_ADMIN_PASSWORD>` on every
 * /admin/api/* route and com.atproto.admin.* method; the /admin page itself is
 * public but every API call it makes needs the password; a password is
 * generated and logged when none is configured.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import { pino } from 'pino'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { Relay } from '../../src/relay.js'
import { ADMIN_PASSWORD, apiUrl, basic, call, stopRelay, World } from './harness.js'
import { startTestRelay } from '../helpers/relay.js'

let world: World
let relay: Relay

beforeAll(async () => {
  world = await World.start()
  relay = await startTestRelay(world.relayOptions())
}, 30_000)

afterAll(async () => {
  await stopRelay(relay)
  await world?.close()
}, 30_000)

const DID = 'did:plc:aaaaaaaaaaaaaaaaaaaaaaaa'
const PROTECTED: { path: string; body?: unknown }[] = [
  { path: '/admin/api/hosts' },
  { path: '/admin/api/hosts', body: { hostname: 'pds.example.invalid' } },
  { path: '/admin/api/hosts/block', body: { hostname: 'pds.example.com' } },
  { path: '/admin/api/hosts/unblock', body: { hostname: 'pds.example.com' } },
  { path: '/admin/api/hosts/limit', body: { hostname: 'pds.example.com', accountLimit: 5 } },
  { path: '/admin/api/hosts/lenient', body: { hostname: 'pds.example.com', lenient: true } },
  { path: '/admin/api/domains' },
  { path: '/admin/api/domains/ban', body: { domain: 'example.com' } },
  { path: '/admin/api/domains/unban', body: { domain: 'example.com' } },
  { path: `/admin/api/accounts?did=${DID}` },
  { path: '/admin/api/accounts/takedown', body: { did: DID } },
  { path: '/admin/api/accounts/restore', body: { did: DID } },
  { path: '/admin/api/takedowns' },
  { path: '/admin/api/consumers' },
  { path: '/admin/api/settings' },
  { path: '/admin/api/settings', body: { requestCrawlEnabled: false } },
  { path: '/admin/api/no-such-route' },
  { path: `/xrpc/com.atproto.admin.getSubjectStatus?did=${DID}` },
  { path: '/xrpc/com.atproto.admin.updateSubjectStatus', body: { subject: { $type: 'com.atproto.admin.defs#repoRef', did: DID }, takedown: { applied: true } } },
]

const WRONG: [string, string | null][] = [
  ['no credentials', null],
  ['wrong password', basic('hunter2')],
  ['right password, wrong user', basic(ADMIN_PASSWORD, 'root')],
  ['password with a suffix', basic(ADMIN_PASSWORD + 'x')],
  ['not Basic', `Bearer ${ADMIN_PASSWORD}`],
  ['malformed Basic', 'Basic !!!'],
]

describe('admin API authentication', () => {
  for (const [what, auth] of WRONG) {
    it(`${what}: every admin route answers 401 with WWW-Authenticate and changes nothing`, async () => {
      for (const route of PROTECTED) {
        const res = await call(relay, route.path, { auth, ...(route.body !== undefined ? { body: route.body } : {}) })
        expect(res.status, `${route.body ? 'POST' : 'GET'} ${route.path}`).toBe(401)
        expect(res.headers.get('www-authenticate')).toMatch(/^Basic realm="atrelay admin"/)
        expect(res.body.error).toBe('AuthenticationRequired')
      }
      // Nothing above took effect.
      const settings = await call(relay, '/admin/api/settings')
      expect(settings.body.requestCrawlEnabled).toBe(true)
      const bans = await call(relay, '/admin/api/domains')
      expect(bans.body.domains).toEqual([])
    })
  }

  it('the right password is accepted on every route (errors past auth are the route’s own)', async () => {
    for (const route of PROTECTED) {
      const res = await call(relay, route.path, route.body !== undefined ? { body: route.body } : {})
      expect(res.status, `${route.body ? 'POST' : 'GET'} ${route.path}`).not.toBe(401)
    }
    // Undo what the loop did.
    await call(relay, '/admin/api/settings', { body: { requestCrawlEnabled: true } })
    const unknown = await call(relay, '/admin/api/no-such-route')
    expect(unknown.status).toBe(404)
  })
})

describe('admin page', () => {
  it('loads without credentials and every API call it makes needs them', async () => {
    for (const path of ['/admin', '/admin/']) {
      const res = await fetch(`${apiUrl(relay)}${path}`)
      expect(res.status).toBe(200)
      expect(res.headers.get('content-type')).toContain('text/html')
      const html = await res.text()
      expect(html).toContain('<title>atrelay admin</title>')
      expect(html).not.toContain(ADMIN_PASSWORD)
    }
    // Every `api("<path>"…)` the page's script calls.
    const html = readFileSync(new URL('../../assets/admin.html', import.meta.url), 'utf8')
    const paths = new Set([...html.matchAll(/api\("([a-z/]+)[?"]/g)].map((m) => m[1]!))
    expect(paths.size).toBeGreaterThanOrEqual(10)
    for (const path of paths) {
      for (const method of ['GET', 'POST']) {
        const res = await fetch(`${apiUrl(relay)}/admin/api/${path}`, { method, ...(method === 'POST' ? { body: '{}', headers: { 'Content-Type': 'application/json' } } : {}) })
        expect(res.status, `${method} ${path}`).toBe(401)
        await res.arrayBuffer()
      }
    }
  })
})

describe('generated password', () => {
  it('is logged once at start-up when RELAY_ADMIN_PASSWORD is unset, and works', async () => {
    const lines: Record<string, unknown>[] = []
    const sink = new Writable({
      write(chunk: Buffer, _enc, done) {
        for (const line of chunk.toString('utf8').split('\n')) if (line) lines.push(JSON.parse(line) as Record<string, unknown>)
        done()
      },
    })
    // A data dir of its own: the generated password is saved there, and none is there yet.
    const dataDir = mkdtempSync(join(tmpdir(), 'atrelay-auth-'))
    const other = await startTestRelay(world.relayOptions({ env: { RELAY_ADMIN_PASSWORD: '', RELAY_DATA_DIR: dataDir }, logger: pino({ level: 'warn' }, sink) }))
    try {
      const logged = lines.filter((l) => typeof l.adminPassword === 'string')
      expect(logged).toHaveLength(1)
      const password = logged[0]!.adminPassword as string
      expect(password).toBe(other.adminPassword)
      expect(password.length).toBeGreaterThanOrEqual(20)
      expect((await call(other, '/admin/api/settings', { auth: basic(password) })).status).toBe(200)
      expect((await call(other, '/admin/api/settings', { auth: basic(ADMIN_PASSWORD) })).status).toBe(401)
    } finally {
      await other.stop()
      rmSync(dataDir, { recursive: true, force: true })
    }
  })
})
