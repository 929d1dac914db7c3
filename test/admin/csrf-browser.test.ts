/**
 * Cross-site request forgery against the admin API, in real Chromium: while
 * the browser holds the admin credentials, a page on another origin tries a
 * text/plain updateSubjectStatus takedown and a `text/plain;charset=json`
 * domain ban (fetch no-cors with credentials, and text/plain form posts).
 * The relay must refuse every one (403: the browser names the other origin)
 * and change nothing, while the admin page's own actions still succeed.
 */
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { chromium, type Browser, type BrowserContext } from 'playwright-core'
import { afterAll, beforeAll, expect, it } from 'vitest'
import type { Relay } from '../../src/relay.js'
import type { TestAccount } from '../helpers/repo-builder.js'
import { ADMIN_PASSWORD, addHost, apiUrl, publishGenesis, stopRelay, World } from './harness.js'
import { waitFor } from '../helpers/wait.js'
import { startTestRelay } from '../helpers/relay.js'

const CHROMIUM = '/usr/bin/chromium'
// evil.test is mapped inside Chromium, so no name ever reaches a resolver.
const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--host-resolver-rules=MAP evil.test 127.0.0.1']

let world: World
let relay: Relay
let browser: Browser | undefined
let context: BrowserContext
let attacker: Server
let accounts: TestAccount[]

const REPO_REF = 'com.atproto.admin.defs#repoRef'

/** The attacker's page: every forged request it can make without a CORS preflight, then `window.attackDone`. */
function attackPage(relayOrigin: string, tag: string, fetchDid: string, formDid: string): string {
  const takedown = (did: string) => JSON.stringify({ subject: { $type: REPO_REF, did }, takedown: { applied: true } })
  // text/plain forms send `name=value`: split the JSON so that the `=` lands inside a string.
  const formJson = (json: string) => {
    const cut = json.length - 1
    return { name: json.slice(0, cut) + ',"pad":"', value: '"}' }
  }
  const formTakedown = formJson(takedown(formDid))
  const formBan = formJson(JSON.stringify({ domain: `form-${tag}.example.com` }))
  const attr = (s: string) => s.replace(/&/g, '&amp;').replace(/"/g, '&quot;')
  const form = (id: string, path: string, f: { name: string; value: string }) =>
    `<iframe name="${id}-frame"></iframe><form id="${id}" method="POST" enctype="text/plain" target="${id}-frame" action="${relayOrigin}${path}">` +
    `<input type="hidden" name="${attr(f.name)}" value="${attr(f.value)}"></form>`
  return `<!doctype html><title>totally harmless</title>
${form('f1', '/xrpc/com.atproto.admin.updateSubjectStatus', formTakedown)}
${form('f2', '/admin/api/domains/ban', formBan)}
<script>
const relay = ${JSON.stringify(relayOrigin)};
const loaded = (id) => new Promise((resolve) => { document.querySelector('iframe[name=' + id + '-frame]').onload = resolve; document.getElementById(id).submit(); });
(async () => {
  await fetch(relay + '/xrpc/com.atproto.admin.updateSubjectStatus', { method: 'POST', mode: 'no-cors', credentials: 'include',
    headers: { 'Content-Type': 'text/plain' }, body: ${JSON.stringify(takedown(fetchDid))} }).catch(() => {});
  await fetch(relay + '/admin/api/domains/ban', { method: 'POST', mode: 'no-cors', credentials: 'include',
    headers: { 'Content-Type': 'text/plain;charset=json' }, body: ${JSON.stringify(JSON.stringify({ domain: `fetch-${tag}.example.com` }))} }).catch(() => {});
  await loaded('f1');
  await loaded('f2');
  window.attackDone = true;
})();
</script>`
}

beforeAll(async () => {
  world = await World.start()
  relay = await startTestRelay(world.relayOptions())
  const pds = await world.host()
  await addHost(relay, pds)
  accounts = await world.accounts(pds, 5)
  await publishGenesis(pds, accounts)
  await waitFor('accounts known', async () => (await Promise.all(accounts.map((a) => relay.admin.account(a.did)))).every((a) => a?.localStatus === 'active'))

  attacker = createServer((req, res) => {
    const u = new URL(req.url ?? '/', 'http://attacker.invalid')
    const p = (n: string) => u.searchParams.get(n) ?? ''
    res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' })
    res.end(attackPage(apiUrl(relay), p('tag'), p('fetchDid'), p('formDid')))
  })
  await new Promise<void>((resolve) => attacker.listen(0, '127.0.0.1', resolve))

  browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS, timeout: 30_000 })
  context = await browser.newContext({ httpCredentials: { username: 'admin', password: ADMIN_PASSWORD, origin: apiUrl(relay) } })
}, 90_000)

afterAll(async () => {
  await browser?.close()
  await new Promise((resolve) => (attacker ? attacker.close(resolve) : resolve(undefined)))
  await stopRelay(relay)
  await world?.close()
}, 30_000)

const status = async (did: string) => (await relay.admin.account(did))?.localStatus
const bans = async () => (await relay.admin.listDomainBans()).map((b) => b.domain)

it('the browser holds the admin credentials for the relay', async () => {
  const page = await context.newPage()
  const res = await page.goto(`${apiUrl(relay)}/admin/api/hosts`)
  expect(res?.status()).toBe(200)
  expect(await page.textContent('body')).toContain('"hosts"')
  await page.close()
}, 30_000)

it.each([
  ['another port on the same host (same-site)', '127.0.0.1', 'port', 0, 1],
  ['another site', 'evil.test', 'site', 2, 3],
])('a page from %s cannot take an account down or ban a domain', async (_what, attackerHost, tag, fetchIndex, formIndex) => {
  const fetchDid = accounts[fetchIndex]!.did
  const formDid = accounts[formIndex]!.did
  const page = await context.newPage()
  const answers: { url: string; status: number }[] = []
  page.on('response', (r) => {
    if (r.url().startsWith(apiUrl(relay))) answers.push({ url: new URL(r.url()).pathname, status: r.status() })
  })
  const port = (attacker.address() as AddressInfo).port
  const q = new URLSearchParams({ tag, fetchDid, formDid })
  await page.goto(`http://${attackerHost}:${port}/attack?${q}`)
  await page.waitForFunction(() => (globalThis as unknown as { attackDone?: boolean }).attackDone === true, undefined, { timeout: 20_000 })

  // All four forged requests reached the relay and were refused there.
  expect(answers.map((a) => a.url).sort()).toEqual(['/admin/api/domains/ban', '/admin/api/domains/ban', '/xrpc/com.atproto.admin.updateSubjectStatus', '/xrpc/com.atproto.admin.updateSubjectStatus'])
  expect(answers.map((a) => a.status)).toEqual([403, 403, 403, 403])
  // And nothing changed.
  expect(await status(fetchDid)).toBe('active')
  expect(await status(formDid)).toBe('active')
  expect(await bans()).toEqual([])
  await page.close()
}, 60_000)

it('the admin page on the relay’s own origin still bans a domain and takes an account down', async () => {
  const target = accounts[4]!.did
  const page = await context.newPage()
  await page.goto(`${apiUrl(relay)}/admin`)
  await page.fill('#password', ADMIN_PASSWORD)
  await page.click('#login-form button[type=submit]')
  await page.waitForSelector('#host-rows tr[data-host]')

  await page.click('#tabs button[data-tab=domains]')
  await page.fill('#domain', 'own-page.example.com')
  await page.click('#ban-domain')
  await page.waitForSelector('#domain-rows td:has-text("own-page.example.com")')
  expect(await bans()).toEqual(['own-page.example.com'])

  await page.click('#tabs button[data-tab=accounts]')
  await page.fill('#did', target)
  await page.click('#lookup')
  await page.click('#account-detail #takedown')
  await page.waitForSelector('#account-detail #restore')
  expect(await status(target)).toBe('takendown')
  await page.close()
}, 60_000)
