/**
 * Handle resolution (DNS TXT through an injected lookup, HTTPS through a
 * loopback server) and the directory's cached bidirectional check.
 */
import { createServer, type Server } from 'node:http'
import { connect, type AddressInfo } from 'node:net'
import pino from 'pino'
import { Registry } from 'prom-client'
import { Agent, type Dispatcher } from 'undici'
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { parseDidKey } from '../../src/atproto/keys.js'
import type { IdentityResult } from '../../src/identity/did-doc.js'
import { IdentityDirectory } from '../../src/identity/directory.js'
import { HandleResolver, type TxtLookup } from '../../src/identity/handle.js'
import type { AddressLookup } from '../../src/net/net-guard.js'

const DID_A = 'did:plc:aaaaaaaaaaaaaaaaaaaaaaaa'
const DID_B = 'did:plc:bbbbbbbbbbbbbbbbbbbbbbbb'
const KEY = parseDidKey('did:key:zQ3shXjHeiBuRCKmM36cuYnm7YEMzhGnCmCyW92sRJ9pribSF')

let server: Server
let port: number
let wellKnown: Record<string, { status: number; body: string }> = {}
const httpRequests: string[] = []
const txtQueries: string[] = []
let txtRecords: Record<string, string[][]> = {}

const txtLookup: TxtLookup = async (name) => {
  txtQueries.push(name)
  const records = txtRecords[name]
  if (!records) throw Object.assign(new Error(`queryTxt ENOTFOUND ${name}`), { code: 'ENOTFOUND' })
  return records
}
// No real DNS: every name but localhost is NXDOMAIN.
const lookup: AddressLookup = async (hostname) => {
  if (hostname === 'localhost') return [{ address: '127.0.0.1', family: 4 }]
  throw Object.assign(new Error(`ENOTFOUND ${hostname}`), { code: 'ENOTFOUND' })
}

beforeAll(async () => {
  server = createServer((req, res) => {
    const host = (req.headers.host ?? '').toLowerCase()
    httpRequests.push(`${host}${req.url}`)
    const hit = req.url === '/.well-known/atproto-did' ? wellKnown[host] : undefined
    res.writeHead(hit?.status ?? 404, { 'content-type': 'text/plain' }).end(hit?.body ?? 'not found')
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  port = (server.address() as AddressInfo).port
})
afterAll(async () => {
  server.closeAllConnections()
  await new Promise((resolve) => server.close(resolve))
})
beforeEach(() => {
  wellKnown = {}
  txtRecords = {}
  httpRequests.length = 0
  txtQueries.length = 0
})

/**
 * Test-only dispatcher: every connection, whatever the URL's host, goes as
 * plain HTTP to the loopback server (so an https://<handle>/ URL can be served
 * without TLS or DNS). Used only where DNS and HTTPS must disagree.
 */
function loopbackRouter(): Dispatcher {
  return new Agent({
    connect: (_opts, cb) => {
      const socket = connect(port, '127.0.0.1')
      socket.once('connect', () => cb(null, socket))
      socket.once('error', (err) => cb(err, null))
    },
  })
}

describe('HandleResolver', () => {
  it('uses did= TXT records at _atproto.<handle>, ignoring other values', async () => {
    const resolver = new HandleResolver({ txtLookup, lookup })
    try {
      txtRecords['_atproto.alice.example.com'] = [['v=spf1 -all'], ['did=', DID_A], ['did=not-a-did']]
      expect(await resolver.resolve('Alice.Example.com')).toEqual({ did: DID_A, method: 'dns' })
      expect(txtQueries).toContain('_atproto.alice.example.com')
    } finally {
      await resolver.close()
    }
  })

  it('conflicting TXT records fail the resolution', async () => {
    const resolver = new HandleResolver({ txtLookup, lookup })
    try {
      txtRecords['_atproto.bob.example.com'] = [[`did=${DID_A}`], [`did=${DID_B}`]]
      const r = await resolver.resolve('bob.example.com')
      expect(r.did).toBeNull()
      // the same DID twice is not a conflict
      txtRecords['_atproto.bob.example.com'] = [[`did=${DID_A}`], [`did=${DID_A}`]]
      expect((await resolver.resolve('bob.example.com')).did).toBe(DID_A)
    } finally {
      await resolver.close()
    }
  })

  it('falls back to HTTPS /.well-known/atproto-did; in development localhost:<port> is served over http', async () => {
    const resolver = new HandleResolver({ txtLookup, lookup, allowInsecure: true })
    try {
      wellKnown[`localhost:${port}`] = { status: 200, body: `  ${DID_B}\n` }
      expect(await resolver.resolve(`localhost:${port}`)).toEqual({ did: DID_B, method: 'https' })
      expect(httpRequests).toEqual([`localhost:${port}/.well-known/atproto-did`])
      expect(txtQueries).toEqual([]) // no DNS for a dev localhost handle
      wellKnown[`localhost:${port}`] = { status: 200, body: 'garbage' }
      expect((await resolver.resolve(`localhost:${port}`)).did).toBeNull()
      wellKnown[`localhost:${port}`] = { status: 200, body: 'd'.repeat(3000) }
      expect((await resolver.resolve(`localhost:${port}`)).did).toBeNull()
    } finally {
      await resolver.close()
    }
  })

  it('prefers DNS when both methods answer differently, and uses HTTPS when DNS has nothing', async () => {
    const resolver = new HandleResolver({ txtLookup, lookup, dispatcher: loopbackRouter() })
    try {
      txtRecords['_atproto.carol.example.com'] = [[`did=${DID_A}`]]
      wellKnown['carol.example.com'] = { status: 200, body: DID_B }
      expect(await resolver.resolve('carol.example.com')).toEqual({ did: DID_A, method: 'dns' })
      delete txtRecords['_atproto.carol.example.com']
      expect(await resolver.resolve('carol.example.com')).toEqual({ did: DID_B, method: 'https' })
    } finally {
      await resolver.close()
    }
  })

  it('refuses invalid handles, reserved TLDs and localhost outside development without any lookup', async () => {
    const resolver = new HandleResolver({ txtLookup, lookup })
    try {
      for (const h of ['not a handle', 'alice.local', 'x.onion', 'handle.invalid', 'alice.test', `localhost:${port}`, 'nodots']) {
        expect((await resolver.resolve(h)).did, h).toBeNull()
      }
      expect(txtQueries).toEqual([])
      expect(httpRequests).toEqual([])
    } finally {
      await resolver.close()
    }
  })
})

describe('HandleResolver and .test handles in development', () => {
  it('never asks the system resolver about .test names: without injected resolvers it fails at once', async () => {
    // No txtLookup and no address lookup: the defaults would be the system DNS, which must not be asked.
    const resolver = new HandleResolver({ allowInsecure: true, timeoutMs: 60_000 })
    try {
      const started = Date.now()
      const result = await resolver.resolve('alice.test')
      expect(result.did).toBeNull()
      expect((result as { error: string }).error).toContain('.test handles need a development resolver')
      expect(Date.now() - started).toBeLessThan(30_000) // no network wait (a hang would hit the 60 s timeout)
    } finally {
      await resolver.close()
    }
  })

  it('uses injected resolvers for .test names', async () => {
    const asked: string[] = []
    const resolver = new HandleResolver({
      allowInsecure: true,
      txtLookup: async (name) => (asked.push(name), [[`did=${DID_A}`]]),
    })
    try {
      expect(await resolver.resolve('alice.test')).toEqual({ did: DID_A, method: 'dns' })
      expect(asked).toEqual(['_atproto.alice.test'])
    } finally {
      await resolver.close()
    }
  })
})

describe('IdentityDirectory handles', () => {
  const logger = pino({ level: 'silent' })
  let claims: Record<string, string | null>

  function directory(clock: { t: number }, handleResolver: HandleResolver) {
    const resolver = async (did: string): Promise<IdentityResult> =>
      did in claims
        ? { status: 'ok', did, signingKey: KEY, pdsEndpoint: 'https://pds.example.com', pdsHost: 'pds.example.com', handle: claims[did] ?? null }
        : { status: 'not_found', did, error: 'unknown' }
    return new IdentityDirectory({
      resolver,
      handleResolver,
      cacheSize: 100,
      goodTtlMs: 24 * 3600_000,
      errorTtlMs: 120_000,
      invalidHandleTtlMs: 300_000,
      logger,
      registry: new Registry(),
      now: () => clock.t,
    })
  }

  beforeEach(() => {
    claims = { [DID_A]: 'alice.example.com', [DID_B]: 'mallory.example.com' }
  })

  it('resolveHandle goes through the handle resolver', async () => {
    const hr = new HandleResolver({ txtLookup, lookup })
    try {
      const dir = directory({ t: 0 }, hr)
      txtRecords['_atproto.alice.example.com'] = [[`did=${DID_A}`]]
      expect(await dir.resolveHandle('alice.example.com')).toBe(DID_A)
      expect(await dir.resolveHandle('nobody.example.com')).toBeNull()
    } finally {
      await hr.close()
    }
  })

  it('verifyHandle needs both directions, and caches valid and invalid answers for their TTLs', async () => {
    const hr = new HandleResolver({ txtLookup, lookup })
    const clock = { t: 1_000_000 }
    try {
      const dir = directory(clock, hr)
      txtRecords['_atproto.alice.example.com'] = [[`did=${DID_A}`]]
      txtRecords['_atproto.mallory.example.com'] = [[`did=${DID_A}`]] // mallory claims a handle pointing elsewhere

      expect(await dir.verifyHandle(DID_A, 'Alice.Example.com')).toBe(true)
      expect(await dir.verifyHandle(DID_B, 'alice.example.com')).toBe(false) // the document does not claim it
      expect(await dir.verifyHandle(DID_B, 'mallory.example.com')).toBe(false) // handle → DID_A ≠ DID_B

      const queries = txtQueries.length
      expect(await dir.verifyHandle(DID_A, 'alice.example.com')).toBe(true)
      expect(await dir.verifyHandle(DID_B, 'mallory.example.com')).toBe(false)
      expect(txtQueries.length).toBe(queries) // both served from the check cache

      // mallory fixes DNS; the invalid answer is remembered for 5 minutes only
      txtRecords['_atproto.mallory.example.com'] = [[`did=${DID_B}`]]
      clock.t += 299_000
      expect(await dir.verifyHandle(DID_B, 'mallory.example.com')).toBe(false)
      clock.t += 2_000
      expect(await dir.verifyHandle(DID_B, 'mallory.example.com')).toBe(true)

      // a valid answer lasts the good TTL, and a refresh (#identity) drops it
      txtRecords['_atproto.alice.example.com'] = [[`did=${DID_B}`]]
      expect(await dir.verifyHandle(DID_A, 'alice.example.com')).toBe(true)
      await dir.refresh(DID_A)
      expect(await dir.verifyHandle(DID_A, 'alice.example.com')).toBe(false)
    } finally {
      await hr.close()
    }
  })
})
