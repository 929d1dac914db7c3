/**
 * The admin page in a real browser (Debian's headless Chromium driven by
 * playwright-core): sign in, filter the host table, open a host, block it and
 * see its status turn to banned, in the page and in the relay.
 *
 * ADMIN_SCREENSHOT=docs/admin-screenshot.png writes the screenshot used in the
 * docs; otherwise it goes to the temp directory (and is still checked).
 */
import { rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { chromium, type Browser } from 'playwright-core'
import { afterAll, beforeAll, expect, it } from 'vitest'
import type { Relay } from '../../src/relay.js'
import type { FakePds } from '../helpers/fake-pds.js'
import { ADMIN_PASSWORD, addHost, apiUrl, hostView, publishGenesis, stopRelay, World } from './harness.js'
import { waitFor } from '../helpers/wait.js'
import { startTestRelay } from '../helpers/relay.js'

const CHROMIUM = '/usr/bin/chromium'
const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync']

let world: World
let relay: Relay
let browser: Browser | undefined
let hosts: FakePds[]

beforeAll(async () => {
  world = await World.start()
  relay = await startTestRelay(world.relayOptions())
  hosts = [await world.host(), await world.host(), await world.host()]
  for (const pds of hosts) await addHost(relay, pds)
  for (const [i, pds] of hosts.entries()) await publishGenesis(pds, await world.accounts(pds, i + 1))
  await waitFor('accounts counted', async () => (await hostView(relay, hosts[2]!.hostname))?.accountCount === 3)
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS, timeout: 30_000 })
}, 60_000)

afterAll(async () => {
  await browser?.close()
  await stopRelay(relay)
  await world?.close()
}, 30_000)

it('sign in, filter, open a host, block it: status becomes banned', async () => {
  const page = await browser!.newPage({ viewport: { width: 1100, height: 640 } })
  const target = hosts[1]!
  await page.goto(`${apiUrl(relay)}/admin`)
  await expect.poll(() => page.title()).toBe('atrelay admin')

  // A wrong password keeps the login form up with a message.
  await page.fill('#password', 'not the password')
  await page.click('#login-form button[type=submit]')
  await page.waitForSelector('#login-error:has-text("Sign-in failed")')
  expect(await page.isHidden('#app')).toBe(true)

  await page.fill('#password', ADMIN_PASSWORD)
  await page.click('#login-form button[type=submit]')
  await page.waitForSelector('#host-rows tr[data-host]')
  expect(await page.locator('#host-rows tr[data-host]').count()).toBe(3)

  // Filter by part of the hostname (its port): one row left.
  await page.fill('#host-filter', String(target.port))
  await expect.poll(() => page.locator('#host-rows tr[data-host]').count()).toBe(1)
  const row = page.locator(`#host-rows tr[data-host="${target.hostname}"]`)
  expect(await row.locator('td.status').textContent()).toBe('active')

  await row.click()
  await page.waitForSelector(`#host-detail h2:has-text("${target.hostname}")`)
  expect(await page.locator('#host-detail').textContent()).toContain('2 of 100')
  await page.click('#host-detail #block')

  await page.waitForSelector(`#host-rows tr[data-host="${target.hostname}"] td.status.banned`)
  expect(await page.locator('#msg').textContent()).toBe(`Blocked ${target.hostname}`)
  expect(await page.locator('#host-detail dd.status').textContent()).toBe('banned')
  expect(await page.isVisible('#host-detail #unblock')).toBe(true)
  // The relay agrees.
  expect((await hostView(relay, target.hostname))?.status).toBe('banned')
  await waitFor('relay disconnected from the blocked host', () => target.openConnections === 0)

  // The status filter finds it too.
  await page.fill('#host-filter', '')
  await page.selectOption('#status-filter', 'banned')
  await expect.poll(() => page.locator('#host-rows tr[data-host]').count()).toBe(1)
  await page.selectOption('#status-filter', '')
  await expect.poll(() => page.locator('#host-rows tr[data-host]').count()).toBe(3)

  const file = process.env.ADMIN_SCREENSHOT ?? join(tmpdir(), `atrelay-admin-${process.pid}.png`)
  await page.screenshot({ path: file })
  const size = statSync(file).size
  // Keep only a requested screenshot: routine runs leave nothing behind.
  if (!process.env.ADMIN_SCREENSHOT) rmSync(file, { force: true })
  expect(size).toBeGreaterThan(5_000)
  expect(size).toBeLessThan(300_000)
  await page.close()
}, 60_000)

it('the other tabs load their data through the authenticated API', async () => {
  const page = await browser!.newPage({ viewport: { width: 1100, height: 640 } })
  await page.goto(`${apiUrl(relay)}/admin`)
  await page.fill('#password', ADMIN_PASSWORD)
  await page.click('#login-form button[type=submit]')
  await page.waitForSelector('#host-rows tr[data-host]')

  await page.click('#tabs button[data-tab=settings]')
  await expect.poll(() => page.inputValue('#per-day')).toBe('50')
  expect(await page.isChecked('#crawl-enabled')).toBe(true)
  await page.fill('#per-day', '7')
  await page.click('#save-settings')
  await page.waitForSelector('#msg:has-text("Settings saved")')
  expect((await relay.admin.settings()).newHostsPerDay).toBe(7)

  await page.click('#tabs button[data-tab=domains]')
  await page.fill('#domain', 'spam.example.com')
  await page.click('#ban-domain')
  await page.waitForSelector('#domain-rows td:has-text("spam.example.com")')
  await page.click('[data-unban="spam.example.com"]')
  await page.waitForSelector('#domain-rows td:has-text("No bans")')

  await page.click('#tabs button[data-tab=consumers]')
  await page.waitForSelector('#consumer-rows td:has-text("No consumers")')

  // Sign out forgets the password: a reload shows the login form.
  await page.click('#logout')
  await page.reload()
  expect(await page.isVisible('#login')).toBe(true)
  expect(await page.isHidden('#app')).toBe(true)
  await page.close()
}, 60_000)
