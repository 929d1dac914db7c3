/**
 * Runtime settings changed through the admin API (public requestCrawl switch,
 * new hosts per day) are kept in the database and survive a restart: a second
 * relay on the same database starts with them.
 */
import { afterAll, beforeAll, expect, it } from 'vitest'
import type { Relay } from '../../src/relay.js'
import { addHost, admin, call, hostView, stopRelay, World } from './harness.js'
import { waitFor } from '../helpers/wait.js'
import { startTestRelay } from '../helpers/relay.js'

let world: World
let relay: Relay | undefined

beforeAll(async () => {
  world = await World.start()
}, 30_000)

afterAll(async () => {
  await stopRelay(relay)
  await world?.close()
}, 30_000)

const requestCrawl = (r: Relay, hostname: string) => call(r, '/xrpc/com.atproto.sync.requestCrawl', { body: { hostname }, auth: null })

it('requestCrawl switch and per-day limit take effect at once and survive a restart', async () => {
  relay = await startTestRelay(world.relayOptions({ env: { RELAY_NEW_HOSTS_PER_DAY: '10' } }))
  expect(await admin(relay, 'settings')).toEqual({ requestCrawlEnabled: true, newHostsPerDay: 10 })

  // Per-day limit: one public admission, then 429.
  expect(await admin(relay, 'settings', { newHostsPerDay: 1 })).toEqual({ requestCrawlEnabled: true, newHostsPerDay: 1 })
  const [a, b, c] = [await world.host(), await world.host(), await world.host()]
  expect((await requestCrawl(relay, a.hostname)).status).toBe(200)
  await waitFor('relay subscribed to the admitted host', () => a.openConnections === 1)
  const full = await requestCrawl(relay, b.hostname)
  expect(full.status).toBe(429)
  expect(full.body.error).toBe('RateLimitExceeded')
  expect(full.headers.get('retry-after')).toMatch(/^\d+$/)

  // Switch public requestCrawl off: 403, even for a host that would fit the limit.
  await admin(relay, 'settings', { requestCrawlEnabled: false, newHostsPerDay: 5 })
  const off = await requestCrawl(relay, b.hostname)
  expect(off.status).toBe(403)
  // Operators can still add hosts.
  await addHost(relay, c)

  const bad = await call(relay, '/admin/api/settings', { body: { newHostsPerDay: -3 } })
  expect(bad.status).toBe(400)
  const badFlag = await call(relay, '/admin/api/settings', { body: { requestCrawlEnabled: 'no' } })
  expect(badFlag.status).toBe(400)

  // Restart on the same database (env still says 10 per day and enabled).
  await stopRelay(relay)
  relay = undefined
  relay = await startTestRelay(world.relayOptions({ env: { RELAY_NEW_HOSTS_PER_DAY: '10' } }))
  expect(await admin(relay, 'settings')).toEqual({ requestCrawlEnabled: false, newHostsPerDay: 5 })
  expect((await requestCrawl(relay, b.hostname)).status).toBe(403)
  // Known hosts were resubscribed.
  await waitFor('hosts resubscribed after restart', () => a.openConnections === 1 && c.openConnections === 1)
  expect((await hostView(relay, a.hostname))?.status).toBe('active')

  // Back on, with the saved per-day limit in force.
  await admin(relay, 'settings', { requestCrawlEnabled: true })
  expect((await requestCrawl(relay, b.hostname)).status).toBe(200)
  await waitFor('relay subscribed to the host admitted after the restart', () => b.openConnections === 1)
  await admin(relay, 'settings', { newHostsPerDay: 1 })
  const d = await world.host()
  expect((await requestCrawl(relay, d.hostname)).status).toBe(429)
}, 60_000)
