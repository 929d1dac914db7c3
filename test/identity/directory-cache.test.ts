/**
 * Cache behaviour of the identity directory with a fast fake resolver (these
 * test the cache, not PLC), and the per-target token bucket.
 */
import { sql } from 'kysely'
import pino from 'pino'
import { Registry } from 'prom-client'
import { describe, expect, it } from 'vitest'
import { parseDidKey } from '../../src/atproto/keys.js'
import type { IdentityResult } from '../../src/identity/did-doc.js'
import { IdentityDirectory, type IdentityDirectoryOptions } from '../../src/identity/directory.js'
import { KeyedTokenBucket } from '../../src/identity/rate-limit.js'
import { createTestDatabase } from '../helpers/db.js'

const logger = pino({ level: 'silent' })
const KEY = parseDidKey('did:key:zQ3shXjHeiBuRCKmM36cuYnm7YEMzhGnCmCyW92sRJ9pribSF')
const FAST = { plc: { ratePerSec: 1e9, burst: 1e9 }, web: { ratePerSec: 1e9, burst: 1e9 } }

const ok = (did: string, pds = 'pds.example.com'): IdentityResult => ({
  status: 'ok',
  did,
  signingKey: KEY,
  pdsEndpoint: `https://${pds}`,
  pdsHost: pds,
  handle: null,
})

const B32 = 'abcdefghijklmnopqrstuvwxyz234567'
/** A syntactically valid did:plc for index i. */
function plcDid(i: number): string {
  let s = ''
  for (let n = i, k = 0; k < 24; k++, n = Math.floor(n / 32)) s = B32[n % 32]! + s
  return `did:plc:${s}`
}

/** A resolver whose answers wait until the test releases them; the n-th call answers pds<n>. */
function gatedResolver() {
  const gate = {
    calls: 0,
    releases: [] as (() => void)[],
    resolve: (did: string) =>
      new Promise<IdentityResult>((resolve) => {
        const n = ++gate.calls
        gate.releases.push(() => resolve(ok(did, `pds${n}.example.com`)))
      }),
  }
  return gate
}

function makeDirectory(resolver: (did: string) => Promise<IdentityResult>, extra: Partial<IdentityDirectoryOptions> = {}) {
  const registry = new Registry()
  const directory = new IdentityDirectory({
    resolver,
    cacheSize: 1000,
    goodTtlMs: 3600_000,
    errorTtlMs: 120_000,
    perTargetRate: FAST,
    logger,
    registry,
    ...extra,
  })
  return { directory, registry }
}

async function metricValue(registry: Registry, name: string): Promise<number> {
  const m = (await registry.getMetricsAsJSON()).find((x) => x.name === name)
  return ((m?.values ?? []) as { value: number }[]).reduce((a, v) => a + v.value, 0)
}

describe('IdentityDirectory memory bound', () => {
  it('resolving 100k DIDs through a 10k cache keeps 10k entries', async () => {
    let calls = 0
    const { directory, registry } = makeDirectory(
      async (did) => {
        calls++
        return ok(did)
      },
      { cacheSize: 10_000 },
    )
    for (let i = 0; i < 100_000; i++) {
      const r = await directory.resolve(plcDid(i))
      if (r.did !== plcDid(i)) throw new Error(`wrong result for ${i}`)
    }
    expect(calls).toBe(100_000)
    expect(directory.cacheSize).toBe(10_000)
    expect(await metricValue(registry, 'relay_identity_cache_entries')).toBe(10_000)
    // the most recent DIDs are still cached, the oldest are not
    await directory.resolve(plcDid(99_999))
    expect(calls).toBe(100_000)
    await directory.resolve(plcDid(0))
    expect(calls).toBe(100_001)
  })
})

describe('IdentityDirectory TTLs and failures', () => {
  it('failed results are cached for the error TTL', async () => {
    const clock = { t: 0 }
    let calls = 0
    const { directory } = makeDirectory(
      async (did) => {
        calls++
        return { status: 'failed', did, error: 'boom' }
      },
      { now: () => clock.t },
    )
    const did = plcDid(1)
    expect((await directory.resolve(did)).status).toBe('failed')
    clock.t += 119_999
    expect((await directory.resolve(did)).status).toBe('failed')
    expect(calls).toBe(1)
    clock.t += 2
    await directory.resolve(did)
    expect(calls).toBe(2)
  })

  it('a transient failure keeps serving the previous good identity, retrying after the error TTL', async () => {
    const clock = { t: 0 }
    let next: 'ok' | 'failed' | 'not_found' = 'ok'
    let calls = 0
    const { directory, registry } = makeDirectory(
      async (did) => {
        calls++
        if (next === 'ok') return ok(did, `pds${calls}.example.com`)
        return { status: next, did, error: next }
      },
      { now: () => clock.t, forceRefreshIntervalMs: 0 },
    )
    const did = plcDid(2)
    expect(await directory.resolve(did)).toMatchObject({ status: 'ok', pdsHost: 'pds1.example.com' })
    next = 'failed'
    expect(await directory.resolve(did, { forceRefresh: true })).toMatchObject({ status: 'ok', pdsHost: 'pds1.example.com' })
    expect(await metricValue(registry, 'relay_identity_stale_served_total')).toBe(1)
    clock.t += 119_999
    await directory.resolve(did)
    expect(calls).toBe(2)
    clock.t += 2
    next = 'ok'
    expect(await directory.resolve(did)).toMatchObject({ status: 'ok', pdsHost: 'pds3.example.com' })
    // an authoritative answer (not_found) does replace it
    next = 'not_found'
    expect((await directory.resolve(did, { forceRefresh: true })).status).toBe('not_found')
  })

  it('a resolver that throws gives a failed result, not an exception', async () => {
    const { directory } = makeDirectory(async () => {
      throw new Error('kaput')
    })
    const r = await directory.resolve(plcDid(3))
    expect(r.status).toBe('failed')
    expect(r.status !== 'ok' && r.error).toMatch(/kaput/)
  })

  it('coalesces a forced refresh with a forced one in flight, but not with a plain one', async () => {
    const gate = gatedResolver()
    const { directory } = makeDirectory(gate.resolve, { forceRefreshIntervalMs: 0 })
    const releases = gate.releases
    const did = plcDid(4)
    const plain = directory.resolve(did)
    const forced1 = directory.resolve(did, { forceRefresh: true })
    const forced2 = directory.resolve(did, { forceRefresh: true })
    const plain2 = directory.resolve(did)
    await new Promise((r) => setImmediate(r))
    expect(gate.calls).toBe(2)
    for (const release of releases) release()
    expect(await plain).toMatchObject({ pdsHost: 'pds1.example.com' })
    expect(await forced1).toMatchObject({ pdsHost: 'pds2.example.com' })
    expect(await forced2).toMatchObject({ pdsHost: 'pds2.example.com' })
    expect(await plain2).toMatchObject({ pdsHost: 'pds2.example.com' })
    // the newer resolution wins in the cache even though both finished
    expect(await directory.resolve(did)).toMatchObject({ pdsHost: 'pds2.example.com' })
  })

  it('a forced refresh within the per-DID interval joins the forced one in flight instead of serving the old entry', async () => {
    const gate = gatedResolver()
    const { directory } = makeDirectory(gate.resolve, { forceRefreshIntervalMs: 60_000 })
    const releases = gate.releases
    const did = plcDid(6)
    const first = directory.resolve(did)
    await new Promise((r) => setImmediate(r))
    releases.shift()!()
    expect(await first).toMatchObject({ pdsHost: 'pds1.example.com' })
    const identityEvent = directory.resolve(did, { forceRefresh: true })
    const signatureRetry = directory.resolve(did, { forceRefresh: true })
    await new Promise((r) => setImmediate(r))
    releases.shift()!()
    expect(await identityEvent).toMatchObject({ pdsHost: 'pds2.example.com' })
    expect(await signatureRetry).toMatchObject({ pdsHost: 'pds2.example.com' })
    expect(gate.calls).toBe(2)
    // once it is done, a further force inside the interval is served from the (fresh) cache
    expect(await directory.resolve(did, { forceRefresh: true })).toMatchObject({ pdsHost: 'pds2.example.com' })
    expect(gate.calls).toBe(2)
  })

  it('a failing identity table does not fail resolution', async () => {
    const tdb = await createTestDatabase('postgres')
    try {
      const { directory, registry } = makeDirectory(async (did) => ok(did), { storage: tdb.storage })
      await sql`drop table identity`.execute(tdb.storage.db) // every read and write now fails
      expect((await directory.resolve(plcDid(5))).status).toBe('ok')
      expect(await metricValue(registry, 'relay_identity_store_errors_total')).toBe(2) // load + save
    } finally {
      await tdb.cleanup()
    }
  })
})

describe('per-target rate limit', () => {
  it('token bucket: a burst passes, then reservations are spaced at the rate', () => {
    let now = 0
    const bucket = new KeyedTokenBucket({ ratePerSec: 10, burst: 2 }, { now: () => now })
    expect(bucket.reserve('plc')).toBe(0)
    expect(bucket.reserve('plc')).toBe(0)
    expect(bucket.reserve('plc')).toBeCloseTo(100)
    expect(bucket.reserve('plc')).toBeCloseTo(200)
    expect(bucket.reserve('other.example.com')).toBe(0) // targets are independent
    now += 1000 // refills to the burst, no more
    expect(bucket.reserve('plc')).toBe(0)
    expect(bucket.reserve('plc')).toBe(0)
    expect(bucket.reserve('plc')).toBeCloseTo(100)
  })

  it('the directory delays resolutions beyond the rate instead of failing them', async () => {
    const started: number[] = []
    const { directory, registry } = makeDirectory(
      async (did) => {
        started.push(performance.now())
        return ok(did)
      },
      { perTargetRate: { plc: { ratePerSec: 20, burst: 2 } } },
    )
    const t0 = performance.now()
    const results = await Promise.all([0, 1, 2, 3, 4, 5].map((i) => directory.resolve(plcDid(100 + i))))
    expect(results.every((r) => r.status === 'ok')).toBe(true)
    // 2 at once, then 4 more at 20/s: the last starts at least ~200 ms later
    expect(Math.max(...started) - t0).toBeGreaterThanOrEqual(180)
    expect(await metricValue(registry, 'relay_identity_rate_limit_delay_seconds_total')).toBeGreaterThan(0.4)
  })
})
