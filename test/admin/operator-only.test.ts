/**
 * Admin writes only from the operator, over plain HTTP: a write must declare
 * `Content-Type: application/json` (415 otherwise) and must not come from
 * another origin or site (403), and no admin route answers CORS. The forged
 * requests a cross-site page could make are refused before anything changes.
 * (test/admin/csrf-browser.test.ts makes the same attempts from real Chromium.)
 */
import { request } from 'node:http'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { Relay } from '../../src/relay.js'
import { ADMIN_PASSWORD, basic, stopRelay, World } from './harness.js'
import { startTestRelay } from '../helpers/relay.js'

let world: World
let relay: Relay

beforeAll(async () => {
  world = await World.start()
  relay = await startTestRelay(world.relayOptions())
}, 60_000)

afterAll(async () => {
  await stopRelay(relay)
  await world?.close()
}, 30_000)

interface Answer {
  status: number
  headers: Record<string, string | string[] | undefined>
  body: Record<string, unknown>
}

/** node:http, so Origin, Sec-Fetch-Site and Host go out exactly as given. */
function send(method: string, path: string, headers: Record<string, string> = {}, body?: string): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port: relay.apiAddress.port, method, path, headers: { Authorization: basic(ADMIN_PASSWORD), ...headers } }, (res) => {
      let text = ''
      res.setEncoding('utf8')
      res.on('data', (c: string) => (text += c))
      res.on('end', () => {
        let parsed: Record<string, unknown> = {}
        try {
          parsed = text ? (JSON.parse(text) as Record<string, unknown>) : {}
        } catch {
          parsed = { text }
        }
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: parsed })
      })
    })
    req.on('error', reject)
    req.end(body)
  })
}

const own = () => `127.0.0.1:${relay.apiAddress.port}`
const ban = (domain: string, headers: Record<string, string>) => send('POST', '/admin/api/domains/ban', headers, JSON.stringify({ domain }))
const bans = async () => (await relay.admin.listDomainBans()).map((b) => b.domain)
const takedown = (headers: Record<string, string>, body = JSON.stringify({ subject: { $type: 'com.atproto.admin.defs#repoRef', did: 'did:plc:aaaaaaaaaaaaaaaaaaaaaaaa' }, takedown: { applied: true } })) =>
  send('POST', '/xrpc/com.atproto.admin.updateSubjectStatus', headers, body)
const corsHeaders = (a: Answer) => Object.keys(a.headers).filter((h) => h.startsWith('access-control-'))

describe('Content-Type on admin writes', () => {
  const refused = [
    undefined,
    'text/plain',
    'text/plain;charset=json',
    'application/x-www-form-urlencoded',
    'multipart/form-data; boundary=x',
    'application/json;charset=json',
    'application/json; charset=latin1',
    'application/jsonp',
    'application/json-patch+json',
    'text/json',
  ]

  it.each(refused)('%s: 415 on /admin/api and updateSubjectStatus, nothing changes', async (type) => {
    const headers: Record<string, string> = type === undefined ? {} : { 'Content-Type': type }
    const a = await ban('refused.example.com', headers)
    expect(a.status).toBe(415)
    expect(a.body).toMatchObject({ error: 'UnsupportedMediaType', message: expect.stringContaining('application/json') })
    const b = await takedown(headers)
    expect(b.status).toBe(415)
    expect(b.body.error).toBe('UnsupportedMediaType')
    expect(await bans()).not.toContain('refused.example.com')
  })

  it('is checked before the body is parsed: a text/plain non-JSON body is 415, not 400', async () => {
    const res = await takedown({ 'Content-Type': 'text/plain' }, 'subject=did:plc:x')
    expect(res.status).toBe(415)
  })

  it.each(['application/json', 'application/json; charset=utf-8', 'Application/JSON;charset="UTF-8"'])('%s is accepted', async (type) => {
    const res = await ban('accepted.example.com', { 'Content-Type': type })
    expect(res.status).toBe(200)
    expect(await bans()).toContain('accepted.example.com')
    await relay.admin.unbanDomain('accepted.example.com')
  })
})

describe('Origin and Sec-Fetch-Site on admin writes', () => {
  const json = { 'Content-Type': 'application/json' }

  it.each([
    { Origin: 'http://evil.example' },
    { Origin: 'null' },
    { Origin: 'http://127.0.0.1:1' },
    { Origin: 'not a url' },
    { 'Sec-Fetch-Site': 'cross-site' },
    { 'Sec-Fetch-Site': 'same-site' },
    // the right Origin does not excuse a browser that says the request came from elsewhere
    { 'Sec-Fetch-Site': 'same-site', Origin: 'ORIGIN' },
  ])('%o: 403 and nothing changes', async (given) => {
    const headers = Object.fromEntries(Object.entries(given).map(([k, v]) => [k, v === 'ORIGIN' ? `http://${own()}` : v]))
    const a = await ban('forged.example.com', { ...json, ...headers })
    expect(a.status).toBe(403)
    expect(a.body.error).toBe('Forbidden')
    const b = await takedown({ ...json, ...headers })
    expect(b.status).toBe(403)
    expect(await bans()).not.toContain('forged.example.com')
  })

  it('a forged request without credentials is 403 too, with no WWW-Authenticate to prompt the browser', async () => {
    const res = await send('POST', '/admin/api/domains/ban', { ...json, Origin: 'http://evil.example', Authorization: '' }, '{"domain":"x.example.com"}')
    expect(res.status).toBe(403)
    expect(res.headers['www-authenticate']).toBeUndefined()
  })

  it('the relay’s own origin, or no Origin at all, is accepted', async () => {
    expect((await ban('own.example.com', { ...json, Origin: `http://${own()}`, 'Sec-Fetch-Site': 'same-origin' })).status).toBe(200)
    expect((await ban('cli.example.com', json)).status).toBe(200)
    // behind a TLS proxy the browser's Origin names the public host; the proxy forwards it
    expect((await ban('proxied.example.com', { ...json, Origin: 'https://relay.example.com', 'X-Forwarded-Host': 'relay.example.com' })).status).toBe(200)
    expect(await bans()).toEqual(expect.arrayContaining(['own.example.com', 'cli.example.com', 'proxied.example.com']))
  })

  it('reads are not affected: a GET with no Origin still answers', async () => {
    expect((await send('GET', '/admin/api/domains')).status).toBe(200)
  })
})

describe('CORS', () => {
  it.each([
    ['GET', '/admin'],
    ['GET', '/admin/api/hosts'],
    ['GET', '/xrpc/com.atproto.admin.getSubjectStatus?did=did:plc:aaaaaaaaaaaaaaaaaaaaaaaa'],
    ['POST', '/admin/api/nope'],
  ])('%s %s answers no Access-Control-* header', async (method, path) => {
    const res = await send(method, path, { 'Content-Type': 'application/json', Origin: 'http://evil.example' })
    expect(res.status).toBeGreaterThan(0)
    expect(corsHeaders(res)).toEqual([])
  })

  it.each(['/admin/api/domains/ban', '/xrpc/com.atproto.admin.updateSubjectStatus', '/admin'])('OPTIONS %s (a preflight) is refused without CORS headers', async (path) => {
    const res = await send('OPTIONS', path, { Origin: 'http://evil.example', 'Access-Control-Request-Method': 'POST', 'Access-Control-Request-Headers': 'content-type' })
    expect(res.status).toBe(403)
    expect(corsHeaders(res)).toEqual([])
  })

  it('the public sync API keeps Access-Control-Allow-Origin: * and answers preflights', async () => {
    const res = await send('GET', '/xrpc/com.atproto.sync.listHosts', { Origin: 'http://evil.example' })
    expect(res.status).toBe(200)
    expect(res.headers['access-control-allow-origin']).toBe('*')
    const pre = await send('OPTIONS', '/xrpc/com.atproto.sync.requestCrawl', { Origin: 'http://evil.example', 'Access-Control-Request-Method': 'POST' })
    expect(pre.status).toBe(204)
    expect(pre.headers['access-control-allow-origin']).toBe('*')
  })
})
