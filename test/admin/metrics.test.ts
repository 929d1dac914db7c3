/**
 * /metrics on the metrics port after real traffic: the series an operator
 * watches are there and moved (events in/accepted/dropped by reason, verify
 * time, sequencer batches and seq, consumers, bytes in and out, per-host lag,
 * identity cache, database pool).
 */
import { Registry } from 'prom-client'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { registerHostLagMetrics } from '../../src/api/relay-metrics.js'
import { HostStats } from '../../src/stats/host-stats.js'
import type { Relay } from '../../src/relay.js'
import type { FakePds } from '../helpers/fake-pds.js'
import { ADMIN_PASSWORD, addHost, basic, metricsUrl, publishGenesis, stopRelay, World } from './harness.js'
import { FirehoseClient } from '../helpers/firehose-client.js'
import { waitFor } from '../helpers/wait.js'
import { startTestRelay } from '../helpers/relay.js'

let world: World
let relay: Relay
let pds: FakePds

beforeAll(async () => {
  world = await World.start()
  relay = await startTestRelay(world.relayOptions())
}, 30_000)

afterAll(async () => {
  await stopRelay(relay)
  await world?.close()
}, 30_000)

/** Parses the text exposition into `name{labels}` → value. */
function parse(text: string): Map<string, number> {
  const out = new Map<string, number>()
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue
    const i = line.lastIndexOf(' ')
    out.set(line.slice(0, i), Number(line.slice(i + 1)))
  }
  return out
}

/** Sum of every series of `name` whose labels contain all of `labels`. */
function sum(m: Map<string, number>, name: string, labels: Record<string, string> = {}): number | undefined {
  let total: number | undefined
  for (const [key, value] of m) {
    const brace = key.indexOf('{')
    const series = brace < 0 ? key : key.slice(0, brace)
    if (series !== name) continue
    if (!Object.entries(labels).every(([k, v]) => key.includes(`${k}="${v}"`))) continue
    total = (total ?? 0) + value
  }
  return total
}

async function scrape(): Promise<{ text: string; m: Map<string, number> }> {
  const res = await fetch(metricsUrl(relay))
  expect(res.status).toBe(200)
  expect(res.headers.get('content-type')).toContain('text/plain')
  const text = await res.text()
  return { text, m: parse(text) }
}

it('exposes the operator metrics after traffic', async () => {
  pds = await world.host()
  const accounts = await world.accounts(pds, 2)
  const consumer = new FirehoseClient(relay)
  await consumer.opened
  await addHost(relay, pds)
  await publishGenesis(pds, accounts)
  const post = await accounts[0]!.createRecord('app.bsky.feed.post', { text: 'metrics', createdAt: new Date().toISOString() })
  pds.publish(post)
  // A replayed commit: dropped as a duplicate.
  pds.publish(post)
  await waitFor('the post on the firehose', () => consumer.events.some((e) => e.body.rev === post.meta.rev))

  const host = pds.hostname
  // 8 genesis events and the post twice: wait until every one is accepted or dropped.
  const { m, text } = await waitFor('all 10 events accounted for', async () => {
    const s = await scrape()
    const received = sum(s.m, 'relay_events_received_total', { host }) ?? 0
    const done = (sum(s.m, 'relay_events_accepted_total', { host }) ?? 0) + (sum(s.m, 'relay_events_dropped_total', { host }) ?? 0)
    return received >= 10 && done === received ? s : undefined
  })
  expect(sum(m, 'relay_events_dropped_total', { host, reason: 'duplicate' })).toBeGreaterThanOrEqual(1)

  // Events by host and type; drops by host and reason.
  expect(sum(m, 'relay_events_received_total', { host })).toBeGreaterThanOrEqual(10)
  expect(sum(m, 'relay_events_received_total', { host, kind: 'commit' })).toBeGreaterThanOrEqual(3)
  expect(sum(m, 'relay_events_accepted_total', { host })).toBeGreaterThanOrEqual(7)
  // Verification time histogram.
  expect(sum(m, 'relay_ingest_verify_seconds_count')).toBeGreaterThanOrEqual(3)
  expect(text).toMatch(/^relay_ingest_verify_seconds_bucket\{/m)
  // Sequencer: batch sizes, commit time, current seq.
  expect(sum(m, 'relay_sequencer_batch_events_count')).toBeGreaterThanOrEqual(1)
  expect(sum(m, 'relay_sequencer_commit_seconds_count')).toBeGreaterThanOrEqual(1)
  const seq = sum(m, 'relay_sequencer_seq')
  expect(seq).toBe(Math.max(...consumer.events.map((e) => e.seq)))
  expect(sum(m, 'relay_sequencer_events_committed_total')).toBe(consumer.events.length)
  // Consumers and bytes both ways.
  expect(sum(m, 'relay_firehose_consumers')).toBe(1)
  expect(sum(m, 'relay_firehose_events_sent_total')).toBe(consumer.events.length)
  expect(sum(m, 'relay_firehose_bytes_sent_total')).toBeGreaterThan(1000)
  expect(sum(m, 'relay_upstream_bytes_total')).toBeGreaterThan(1000)
  expect(sum(m, 'relay_upstream_connected_hosts')).toBe(1)
  // Per-host lag: the host just sent something.
  const age = sum(m, 'relay_upstream_last_event_age_seconds', { host })
  expect(age).toBeGreaterThanOrEqual(0)
  expect(age).toBeLessThan(30)
  expect(sum(m, 'relay_upstream_last_event_age_max_seconds')).toBeGreaterThanOrEqual(age!)
  // Identity: the two DIDs were resolved through the PLC (their #identity forces a fresh
  // resolution, so that is not a cache miss), then served from cache.
  expect(sum(m, 'relay_identity_resolutions_total', { result: 'ok' })).toBeGreaterThanOrEqual(2)
  expect(sum(m, 'relay_identity_cache_misses_total')).toBeGreaterThanOrEqual(0)
  expect(sum(m, 'relay_identity_cache_hits_total')).toBeGreaterThanOrEqual(1)
  // Database pool.
  expect(sum(m, 'relay_db_pool_connections', { state: 'total' })).toBeGreaterThanOrEqual(1)
  expect(sum(m, 'relay_db_pool_connections', { state: 'idle' })).toBeGreaterThanOrEqual(0)
  // Admissions and default process metrics.
  expect(sum(m, 'relay_host_admissions_total', { result: 'added' })).toBe(1)
  expect(sum(m, 'process_resident_memory_bytes')).toBeGreaterThan(0)
})

it('a blocked host leaves the lag gauge but keeps its counters', async () => {
  await waitFor('host dropped from the lag gauge after a block', async () => {
    await fetch(`http://127.0.0.1:${relay.apiAddress.port}/admin/api/hosts/block`, {
      method: 'POST',
      headers: { Authorization: basic(ADMIN_PASSWORD), 'Content-Type': 'application/json' },
      body: JSON.stringify({ hostname: pds.hostname }),
    })
    const { m } = await scrape()
    return sum(m, 'relay_upstream_last_event_age_seconds', { host: pds.hostname }) === undefined
  })
  const { m } = await scrape()
  expect(sum(m, 'relay_upstream_last_event_age_max_seconds')).toBe(0)
  // Counters keep the host's history.
  expect(sum(m, 'relay_events_received_total', { host: pds.hostname })).toBeGreaterThan(0)
})

it('the lag gauge labels only the laggiest hosts; the maximum covers all', async () => {
  const registry = new Registry()
  const stats = new HostStats(registry)
  const now = Date.now()
  // Open connections only: a host still dialling is not the crawler's to report here.
  const conns = Array.from({ length: 5 }, (_, i) => ({ hostname: `pds${i}.example.com`, openSince: now - 3_600_000 }))
  for (const c of conns.slice(0, 4)) stats.received(c.hostname, 'commit') // pds4 never sent: counted from its connection time
  registerHostLagMetrics({ crawler: { openConnections: () => conns }, stats, registry, maxHosts: 2, now: () => now + 10_000 })
  const m = parse(await registry.metrics())
  const labelled = [...m.keys()].filter((k) => k.startsWith('relay_upstream_last_event_age_seconds{'))
  expect(labelled).toHaveLength(2)
  expect(m.get('relay_upstream_last_event_age_seconds{host="pds4.example.com"}')).toBeCloseTo(3610, 0)
  expect(m.get('relay_upstream_last_event_age_max_seconds')).toBeCloseTo(3610, 0)
})
