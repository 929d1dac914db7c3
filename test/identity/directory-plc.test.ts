/**
 * The identity directory against a real PLC directory on loopback, with the
 * identity table on real Postgres and PGlite.
 */
import { Secp256k1Keypair } from '@atproto/crypto'
import pino from 'pino'
import { Registry } from 'prom-client'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { IdentityDirectory } from '../../src/identity/directory.js'
import { createIdentity } from '../../src/identity/index.js'
import { DidResolver } from '../../src/identity/resolver.js'
import type { Storage } from '../../src/storage/db.js'
import { createTestDatabase, STORAGE_KINDS, type TestDatabase } from '../helpers/db.js'
import { startPlcPeer, type PlcPeer } from './plc-peer.js'

const logger = pino({ level: 'silent' })
const GOOD_TTL = 60 * 60_000
const ERROR_TTL = 2 * 60_000
const FORCE_INTERVAL = 10_000

let peer: PlcPeer
let resolver: DidResolver

beforeAll(async () => {
  peer = await startPlcPeer()
  resolver = new DidResolver({ plcUrl: peer.url, timeoutMs: 5_000 })
})
afterAll(async () => {
  await resolver?.close()
  await peer?.close()
})

async function metric(registry: Registry, name: string, labels: Record<string, string> = {}): Promise<number> {
  const m = (await registry.getMetricsAsJSON()).find((x) => x.name === name)
  const values = (m?.values ?? []) as { value: number; labels: Record<string, string | number> }[]
  return values
    .filter((v) => Object.entries(labels).every(([k, want]) => String(v.labels[k]) === want))
    .reduce((sum, v) => sum + v.value, 0)
}

function makeDirectory(storage: Storage | undefined, clock: { t: number }, registry = new Registry()) {
  const directory = new IdentityDirectory({
    resolver,
    ...(storage ? { storage } : {}),
    cacheSize: 1000,
    goodTtlMs: GOOD_TTL,
    errorTtlMs: ERROR_TTL,
    forceRefreshIntervalMs: FORCE_INTERVAL,
    logger,
    registry,
    now: () => clock.t,
  })
  return { directory, registry }
}

describe('DidResolver against @did-plc/server', () => {
  it('resolves the legacy document form and reports unknown DIDs as not_found', async () => {
    const acct = await peer.createAccount('resolver.test', 'http://localhost:2583')
    const r = await resolver.resolve(acct.did)
    expect(r).toMatchObject({ status: 'ok', did: acct.did, pdsEndpoint: 'http://localhost:2583', pdsHost: 'localhost:2583', handle: 'resolver.test' })
    if (r.status === 'ok') expect(r.signingKey.didKey).toBe(acct.signingKey.did())

    const unknown = await resolver.resolve('did:plc:aaaaaaaaaaaaaaaaaaaaaaaa')
    expect(unknown.status).toBe('not_found')
    expect((await resolver.resolve('did:plc:NOTVALID')).status).toBe('failed')
    expect((await resolver.resolve('did:example:123')).status).toBe('failed')
    expect((await resolver.resolve('not a did')).status).toBe('failed')
  })

  it('a signature made with the resolved key verifies', async () => {
    const acct = await peer.createAccount('signer.test', 'https://pds.example.com')
    const r = await resolver.resolve(acct.did)
    if (r.status !== 'ok') throw new Error(`expected ok, got ${r.status}`)
    const msg = new TextEncoder().encode('hello relay')
    const sig = await acct.signingKey.sign(msg)
    expect(r.signingKey.verify(msg, sig)).toBe(true)
  })

  it('reports a PLC directory that does not answer as failed', async () => {
    const dead = new DidResolver({ plcUrl: 'http://127.0.0.1:9', timeoutMs: 2_000, connectTimeoutMs: 1_000 })
    try {
      const r = await dead.resolve('did:plc:aaaaaaaaaaaaaaaaaaaaaaaa')
      expect(r.status).toBe('failed')
    } finally {
      await dead.close()
    }
  })
})

describe('createIdentity', () => {
  it('wires resolver, handle check and directory from flat options', async () => {
    const acct = await peer.createAccount('wired.test', 'http://localhost:2583')
    const identity = createIdentity({
      plcUrl: peer.url,
      allowInsecure: true,
      cacheSize: 100,
      goodTtlMs: GOOD_TTL,
      errorTtlMs: ERROR_TTL,
      logger,
      registry: new Registry(),
      txtLookup: async (name) => (name === '_atproto.wired.test' ? [[`did=${acct.did}`]] : []),
      lookup: async () => {
        throw Object.assign(new Error('ENOTFOUND'), { code: 'ENOTFOUND' })
      },
    })
    try {
      const r = await identity.directory.resolve(acct.did)
      expect(r).toMatchObject({ status: 'ok', pdsHost: 'localhost:2583', handle: 'wired.test' })
      expect(await identity.directory.verifyHandle(acct.did, 'wired.test')).toBe(true)
      expect(await identity.directory.verifyHandle(acct.did, 'other.test')).toBe(false)
    } finally {
      await identity.close()
    }
  })
})

describe.each(STORAGE_KINDS)('IdentityDirectory with PLC and %s', (kind) => {
  let tdb: TestDatabase

  beforeAll(async () => {
    tdb = await createTestDatabase(kind)
  })
  afterAll(async () => {
    await tdb?.cleanup()
  })

  it('caches good results until the TTL, then sees a rotated key', async () => {
    const clock = { t: Date.now() }
    const { directory, registry } = makeDirectory(tdb.storage, clock)
    const acct = await peer.createAccount('rotate.test', 'https://pds.example.com')

    const first = await directory.resolve(acct.did)
    expect(first.status === 'ok' && first.signingKey.didKey).toBe(acct.signingKey.did())
    expect(peer.docRequests.get(acct.did)).toBe(1)

    const newKey = await Secp256k1Keypair.create()
    await peer.client.updateAtprotoKey(acct.did, acct.rotationKey, newKey.did())

    clock.t += GOOD_TTL - 1
    const stale = await directory.resolve(acct.did)
    expect(stale.status === 'ok' && stale.signingKey.didKey).toBe(acct.signingKey.did())
    expect(peer.docRequests.get(acct.did)).toBe(1)

    clock.t += 2
    const fresh = await directory.resolve(acct.did)
    expect(fresh.status === 'ok' && fresh.signingKey.didKey).toBe(newKey.did())
    expect(peer.docRequests.get(acct.did)).toBe(2)
    expect(await metric(registry, 'relay_identity_cache_hits_total', { layer: 'memory' })).toBe(1)
    expect(await metric(registry, 'relay_identity_resolutions_total', { method: 'plc', result: 'ok' })).toBe(2)
  })

  it('forceRefresh picks up a PDS change at once, and is rate-limited per DID', async () => {
    const clock = { t: Date.now() }
    const { directory, registry } = makeDirectory(tdb.storage, clock)
    const acct = await peer.createAccount('move.test', 'https://old-pds.example.com')
    expect(await directory.resolve(acct.did)).toMatchObject({ status: 'ok', pdsHost: 'old-pds.example.com' })

    await peer.client.updatePds(acct.did, acct.rotationKey, 'https://new-pds.example.com')
    expect(await directory.resolve(acct.did)).toMatchObject({ pdsHost: 'old-pds.example.com' })
    expect(peer.docRequests.get(acct.did)).toBe(1)

    expect(await directory.resolve(acct.did, { forceRefresh: true })).toMatchObject({ pdsHost: 'new-pds.example.com' })
    expect(peer.docRequests.get(acct.did)).toBe(2)

    // A second force right away (a hostile host repeating #identity) is served from cache.
    await peer.client.updatePds(acct.did, acct.rotationKey, 'https://third-pds.example.com')
    clock.t += 1_000
    expect(await directory.resolve(acct.did, { forceRefresh: true })).toMatchObject({ pdsHost: 'new-pds.example.com' })
    expect(peer.docRequests.get(acct.did)).toBe(2)
    expect(await metric(registry, 'relay_identity_forced_refreshes_total', { outcome: 'suppressed' })).toBe(1)

    clock.t += FORCE_INTERVAL
    expect(await directory.resolve(acct.did, { forceRefresh: true })).toMatchObject({ pdsHost: 'third-pds.example.com' })
    expect(peer.docRequests.get(acct.did)).toBe(3)
  })

  it('a tombstoned DID becomes not_found, cached for the error TTL only', async () => {
    const clock = { t: Date.now() }
    const { directory } = makeDirectory(tdb.storage, clock)
    const acct = await peer.createAccount('gone.test', 'https://pds.example.com')
    expect((await directory.resolve(acct.did)).status).toBe('ok')
    await peer.client.tombstone(acct.did, acct.rotationKey)

    expect((await directory.resolve(acct.did)).status).toBe('ok') // still within the good TTL
    const gone = await directory.resolve(acct.did, { forceRefresh: true })
    expect(gone).toMatchObject({ status: 'not_found', did: acct.did })
    expect(peer.docRequests.get(acct.did)).toBe(2)

    clock.t += ERROR_TTL - 1
    expect((await directory.resolve(acct.did)).status).toBe('not_found')
    expect(peer.docRequests.get(acct.did)).toBe(2)
    clock.t += 2
    expect((await directory.resolve(acct.did)).status).toBe('not_found')
    expect(peer.docRequests.get(acct.did)).toBe(3)

    const row = await tdb.storage.db.selectFrom('identity').selectAll().where('did', '=', acct.did).executeTakeFirstOrThrow()
    expect(row.status).toBe('not_found')
    expect(row.signing_key).toBeNull()
  })

  it('refresh (#identity) fetches afresh every time, replaces the stored row, and coalesces concurrent calls', async () => {
    const clock = { t: Date.now() }
    const { directory } = makeDirectory(tdb.storage, clock)
    const acct = await peer.createAccount('refresh.test', 'https://pds.example.com')
    await directory.resolve(acct.did)
    expect(peer.docRequests.get(acct.did)).toBe(1)
    clock.t += 1_000
    expect(await directory.refresh(acct.did)).toMatchObject({ status: 'ok', handle: 'refresh.test' })
    // A second #identity within the forced-refresh interval is not suppressed (resolve's forceRefresh would be).
    clock.t += 1_000
    await directory.refresh(acct.did)
    expect(peer.docRequests.get(acct.did)).toBe(3)
    await directory.resolve(acct.did, { forceRefresh: true })
    expect(peer.docRequests.get(acct.did)).toBe(3)
    const row = await tdb.storage.db.selectFrom('identity').select(['fetched_at']).where('did', '=', acct.did).executeTakeFirstOrThrow()
    expect(new Date(row.fetched_at).getTime()).toBe(clock.t)

    await Promise.all(Array.from({ length: 5 }, () => directory.refresh(acct.did)))
    expect(peer.docRequests.get(acct.did)).toBe(4)
  })

  it('after a restart, the identity table answers without a request, until the TTL', async () => {
    const clock = { t: Date.now() }
    const accounts = await Promise.all([0, 1, 2].map((i) => peer.createAccount(`restart${i}.test`, `https://pds${i}.example.com`)))
    const before = makeDirectory(tdb.storage, clock)
    for (const a of accounts) expect((await before.directory.resolve(a.did)).status).toBe('ok')
    const unknown = 'did:plc:bbbbbbbbbbbbbbbbbbbbbbbb'
    expect((await before.directory.resolve(unknown)).status).toBe('not_found')
    const requestsBefore = peer.totalDocRequests()

    // A new process: empty memory, same database.
    const after = makeDirectory(tdb.storage, clock)
    for (const [i, a] of accounts.entries()) {
      const r = await after.directory.resolve(a.did)
      expect(r).toMatchObject({ status: 'ok', pdsHost: `pds${i}.example.com`, handle: `restart${i}.test` })
      if (r.status === 'ok') expect(r.signingKey.didKey).toBe(a.signingKey.did())
    }
    expect((await after.directory.resolve(unknown)).status).toBe('not_found')
    expect(peer.totalDocRequests()).toBe(requestsBefore)
    expect(await metric(after.registry, 'relay_identity_cache_hits_total', { layer: 'storage' })).toBe(4)
    expect(await metric(after.registry, 'relay_identity_cache_misses_total')).toBe(0)

    // Past the good TTL the stored rows are stale: resolved again.
    clock.t += GOOD_TTL + 1
    const third = makeDirectory(tdb.storage, clock)
    await third.directory.resolve(accounts[0]!.did)
    expect(peer.totalDocRequests()).toBe(requestsBefore + 1)
    expect(await metric(third.registry, 'relay_identity_cache_misses_total')).toBe(1)
  })

  it('50 concurrent lookups of one DID make one request', async () => {
    const clock = { t: Date.now() }
    const { directory, registry } = makeDirectory(tdb.storage, clock)
    const acct = await peer.createAccount('crowd.test', 'https://pds.example.com')
    const results = await Promise.all(Array.from({ length: 50 }, () => directory.resolve(acct.did)))
    expect(results.every((r) => r.status === 'ok' && r.signingKey.didKey === acct.signingKey.did())).toBe(true)
    expect(peer.docRequests.get(acct.did)).toBe(1)
    expect(await metric(registry, 'relay_identity_coalesced_total')).toBe(49)
  })
})
