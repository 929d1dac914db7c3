/**
 * The admin page's "at a glance" history: the per-interval buckets built from
 * HostStats (unit), the authenticated /admin/api/activity endpoint over a real
 * relay, and the page's charts drawn in headless Chromium.
 *
 * ADMIN_PAGE_SCREENSHOT=docs/admin-page.png writes the screenshot used in the docs.
 */
import { rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { chromium, type Browser } from 'playwright-core'
import { Registry } from 'prom-client'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ActivityHistory, type ActivityView } from '../../src/api/admin/activity.js'
import { HostStats } from '../../src/stats/host-stats.js'
import type { Relay } from '../../src/relay.js'
import type { FakePds } from '../helpers/fake-pds.js'
import { addHost, apiUrl, basic, ADMIN_PASSWORD, publishGenesis, stopRelay, World } from './harness.js'
import { waitFor } from '../helpers/wait.js'
import { startTestRelay } from '../helpers/relay.js'

describe('ActivityHistory', () => {
  it('turns counters into per-interval buckets, keeps only the last `keep`, busiest hosts first', () => {
    const stats = new HostStats(new Registry())
    let t = 1_000_000
    const history = new ActivityHistory(stats, { intervalMs: 1_000, keep: 3, topHosts: 2 })
    // The constructor took its first totals at Date.now(); sample with explicit times from here on.
    history.sample(t)
    for (let i = 0; i < 5; i++) stats.received('a.test', '#commit')
    for (let i = 0; i < 2; i++) stats.received('b.test', '#commit')
    stats.received('c.test', '#commit')
    stats.accepted('a.test', '#commit')
    stats.dropped('b.test', 'bad-signature')
    stats.dropped('b.test', 'bad-signature')
    history.sample((t += 1_000))
    const view = history.view(t + 500)
    expect(view.intervalSeconds).toBe(1)
    const [, full, partial] = view.buckets
    expect(full).toEqual({
      at: new Date(t - 1_000).toISOString(),
      seconds: 1,
      received: 8,
      accepted: 1,
      dropped: { 'bad-signature': 2 },
      topHosts: [
        { hostname: 'a.test', received: 5 },
        { hostname: 'b.test', received: 2 },
      ],
    })
    // The interval in progress comes last, with its own length.
    expect(partial).toMatchObject({ seconds: 0.5, received: 0, dropped: {}, topHosts: [] })

    for (let i = 0; i < 5; i++) history.sample((t += 1_000))
    expect(history.view(t).buckets).toHaveLength(3 + 1)
  })
})

describe('on a running relay', () => {
  let world: World
  let relay: Relay
  let browser: Browser | undefined
  let hosts: FakePds[]

  beforeAll(async () => {
    world = await World.start()
    relay = await startTestRelay(world.relayOptions({ overrides: { activityIntervalMs: 400 } }))
    hosts = [await world.host(), await world.host()]
    for (const pds of hosts) await addHost(relay, pds)
    const busy = await world.accounts(hosts[0]!, 4)
    await publishGenesis(hosts[0]!, busy)
    await publishGenesis(hosts[1]!, await world.accounts(hosts[1]!, 1))
    // Accounts whose DID documents name the busy host, published by the other one: dropped as wrong-host.
    await publishGenesis(hosts[1]!, await world.accounts(hosts[0]!, 2))
    await waitFor('wrong-host drops counted', () => (relay.stats.droppedByReason()['wrong-host'] ?? 0) > 0)
    await waitFor('a few history buckets', () => relay.admin.activity().buckets.length >= 4)
  }, 60_000)

  afterAll(async () => {
    await browser?.close()
    await stopRelay(relay)
    await world?.close()
  }, 30_000)

  it('GET /admin/api/activity: every received event and drop is in some bucket; admin only', async () => {
    const url = `${apiUrl(relay)}/admin/api/activity`
    expect((await fetch(url)).status).toBe(401)
    const res = await fetch(url, { headers: { authorization: basic(ADMIN_PASSWORD) } })
    expect(res.status).toBe(200)
    const view = (await res.json()) as ActivityView
    expect(view.intervalSeconds).toBe(0.4)
    const received = view.buckets.reduce((n, b) => n + b.received, 0)
    const total = hosts.reduce((n, h) => n + relay.stats.snapshot(h.hostname).received, 0)
    expect(received).toBe(total)
    const wrongHost = view.buckets.reduce((n, b) => n + (b.dropped['wrong-host'] ?? 0), 0)
    expect(wrongHost).toBe(relay.stats.droppedByReason()['wrong-host'])
    expect(view.buckets.flatMap((b) => b.topHosts.map((h) => h.hostname))).toContain(hosts[0]!.hostname)
  })

  it('the admin page draws the rate, the drops and the busiest hosts as inline SVG', async () => {
    browser = await chromium.launch({
      executablePath: '/usr/bin/chromium',
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
      timeout: 30_000,
    })
    const page = await browser.newPage({ viewport: { width: 1100, height: 560 } })
    await page.goto(`${apiUrl(relay)}/admin`)
    await page.fill('#password', ADMIN_PASSWORD)
    await page.click('#login-form button[type=submit]')
    await page.waitForSelector('#host-rows tr[data-host]')
    await page.waitForSelector('#chart-rate svg polyline')
    expect(await page.locator('#chart-rate svg polyline').getAttribute('points')).toMatch(/^(\d+(\.\d)?,\d+(\.\d)? ){3,}/)
    await page.waitForSelector('#chart-drops svg text:has-text("wrong-host")')
    expect(await page.locator('#chart-hosts svg text').allTextContents()).toContain(hosts[0]!.hostname)
    // The page loads nothing from outside the relay.
    const origins = new Set<string>()
    page.on('request', (r) => origins.add(new URL(r.url()).origin))
    await page.reload()
    await page.waitForSelector('#chart-drops svg')
    expect([...origins]).toEqual([apiUrl(relay)])

    const file = process.env.ADMIN_PAGE_SCREENSHOT ?? join(tmpdir(), `atrelay-admin-page-${process.pid}.png`)
    await page.screenshot({ path: file })
    const size = statSync(file).size
    if (!process.env.ADMIN_PAGE_SCREENSHOT) rmSync(file, { force: true })
    expect(size).toBeGreaterThan(5_000)
    expect(size).toBeLessThan(300_000)
    await page.close()
  }, 60_000)
})
