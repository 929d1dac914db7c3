/**
 * did:web resolution against a loopback HTTP server (development mode), and
 * the SSRF refusals that must happen before any connection.
 */
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { Secp256k1Keypair } from '@atproto/crypto'
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import type { AddressLookup } from '../../src/net/net-guard.js'
import { DidResolver, webDidAuthority } from '../../src/identity/resolver.js'

let server: Server
let port: number
let did: string
let keyDid: string
let route: (path: string) => { status: number; body?: string; location?: string }
const requests: string[] = []
let lastAccept: string | undefined
const lookups: string[] = []

// Names resolve only through this table: the tests make no real DNS query.
const lookup: AddressLookup = async (hostname) => {
  lookups.push(hostname)
  const table: Record<string, string> = { localhost: '127.0.0.1', 'private.example.com': '10.0.0.5', 'loop.example.com': '127.0.0.1' }
  const address = table[hostname]
  if (!address) throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${hostname}`), { code: 'ENOTFOUND' })
  return [{ address, family: 4 }]
}

function didDoc(id: string) {
  return {
    '@context': ['https://www.w3.org/ns/did/v1'],
    id,
    alsoKnownAs: ['at://web.example.com'],
    verificationMethod: [{ id: `${id}#atproto`, type: 'Multikey', controller: id, publicKeyMultibase: keyDid.slice('did:key:'.length) }],
    service: [{ id: '#atproto_pds', type: 'AtprotoPersonalDataServer', serviceEndpoint: 'https://pds.example.com' }],
  }
}

beforeAll(async () => {
  keyDid = (await Secp256k1Keypair.create()).did()
  server = createServer((req, res) => {
    requests.push(req.url ?? '')
    lastAccept = req.headers.accept
    const r = route(req.url ?? '')
    res.writeHead(r.status, r.location ? { location: r.location } : { 'content-type': 'application/json' })
    res.end(r.body ?? '')
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  port = (server.address() as AddressInfo).port
  did = `did:web:localhost%3A${port}`
})
afterAll(async () => {
  server.closeAllConnections()
  await new Promise((resolve) => server.close(resolve))
})
beforeEach(() => {
  requests.length = 0
  lookups.length = 0
  route = (path) => (path === '/.well-known/did.json' ? { status: 200, body: JSON.stringify(didDoc(did)) } : { status: 404 })
})

async function withResolver<T>(allowInsecure: boolean, fn: (r: DidResolver) => Promise<T>): Promise<T> {
  const resolver = new DidResolver({ plcUrl: 'http://127.0.0.1:9', allowInsecure, lookup, timeoutMs: 3_000, maxDocBytes: 4096 })
  try {
    return await fn(resolver)
  } finally {
    await resolver.close()
  }
}

describe('did:web authority', () => {
  it('accepts hostnames and localhost ports only', () => {
    expect(webDidAuthority('did:web:example.com')).toBe('example.com')
    expect(webDidAuthority('did:web:Example.COM')).toBe('example.com')
    expect(webDidAuthority('did:web:localhost%3A2583')).toBe('localhost:2583')
    expect(webDidAuthority('did:web:example.com%3A8080')).toBeNull()
    expect(webDidAuthority('did:web:example.com:user:alice')).toBeNull()
    expect(webDidAuthority('did:web:example.com%2Fpath')).toBeNull()
    expect(webDidAuthority('did:web:')).toBeNull()
  })
})

describe('did:plc through an operator-configured PLC URL', () => {
  it('never follows redirects from the PLC directory', async () => {
    const plcDid = 'did:plc:aaaaaaaaaaaaaaaaaaaaaaaa'
    route = (path) => (path === `/${plcDid}` ? { status: 302, location: '/elsewhere' } : { status: 200, body: JSON.stringify(didDoc(plcDid)) })
    const resolver = new DidResolver({ plcUrl: `http://127.0.0.1:${port}/`, timeoutMs: 3_000 })
    try {
      const r = await resolver.resolve(plcDid)
      expect(r.status).toBe('failed')
      expect(requests).toEqual([`/${plcDid}`])
      expect(lastAccept).toBe('application/did+ld+json,application/json')
    } finally {
      await resolver.close()
    }
  })
})

describe('did:web resolution', () => {
  it('resolves did:web:localhost%3A<port> over http in development mode', async () => {
    const r = await withResolver(true, (res) => res.resolve(did))
    expect(r).toMatchObject({ status: 'ok', did, pdsHost: 'pds.example.com', handle: 'web.example.com' })
    if (r.status === 'ok') expect(r.signingKey.didKey).toBe(keyDid)
    expect(requests).toEqual(['/.well-known/did.json'])
  })

  it('refuses a port (and so localhost) outside development mode, without a request', async () => {
    const r = await withResolver(false, (res) => res.resolve(did))
    expect(r.status).toBe('failed')
    expect(requests).toEqual([])
  })

  it('404 is not_found; other statuses, bad JSON, wrong id and oversized bodies are failed', async () => {
    await withResolver(true, async (res) => {
      route = () => ({ status: 404 })
      expect((await res.resolve(did)).status).toBe('not_found')
      route = () => ({ status: 500 })
      expect((await res.resolve(did)).status).toBe('failed')
      route = () => ({ status: 200, body: '{not json' })
      expect((await res.resolve(did)).status).toBe('failed')
      route = () => ({ status: 200, body: JSON.stringify(didDoc('did:web:other.example.com')) })
      expect((await res.resolve(did)).status).toBe('failed')
      route = () => ({ status: 200, body: JSON.stringify({ ...didDoc(did), padding: 'x'.repeat(5000) }) })
      const big = await res.resolve(did)
      expect(big.status).toBe('failed')
      expect(big.status !== 'ok' && big.error).toMatch(/too_large/)
    })
  })

  it('follows a redirect on the same loopback host', async () => {
    route = (path) =>
      path === '/.well-known/did.json'
        ? { status: 301, location: '/moved/did.json' }
        : path === '/moved/did.json'
          ? { status: 200, body: JSON.stringify(didDoc(did)) }
          : { status: 404 }
    const r = await withResolver(true, (res) => res.resolve(did))
    expect(r.status).toBe('ok')
    expect(requests).toEqual(['/.well-known/did.json', '/moved/did.json'])
  })

  it('refuses redirects to private addresses, by literal or by name, before connecting', async () => {
    await withResolver(true, async (res) => {
      route = () => ({ status: 302, location: 'http://10.0.0.1/.well-known/did.json' })
      const literal = await res.resolve(did)
      expect(literal.status).toBe('failed')
      expect(literal.status !== 'ok' && literal.error).toMatch(/forbidden/)

      route = () => ({ status: 302, location: 'https://private.example.com/.well-known/did.json' })
      const named = await res.resolve(did)
      expect(named.status).toBe('failed')
      expect(named.status !== 'ok' && named.error).toMatch(/forbidden_address/)
      expect(lookups).toContain('private.example.com')

      route = () => ({ status: 302, location: 'https://192.168.1.1:8443/x' })
      expect((await res.resolve(did)).status).toBe('failed')
    })
  })

  it('refuses did:web hosts that resolve to private or loopback addresses, and NXDOMAIN is not_found', async () => {
    await withResolver(false, async (res) => {
      const priv = await res.resolve('did:web:private.example.com')
      expect(priv.status).toBe('failed')
      expect(priv.status !== 'ok' && priv.error).toMatch(/forbidden_address/)
      const loop = await res.resolve('did:web:loop.example.com')
      expect(loop.status).toBe('failed')
      expect((await res.resolve('did:web:nowhere.example.com')).status).toBe('not_found')
    })
    await withResolver(true, async (res) => {
      // development mode still refuses private (non-loopback) addresses
      expect((await res.resolve('did:web:private.example.com')).status).toBe('failed')
    })
  })

  it('refuses reserved names, IP literals, path-based DIDs and ports on public names', async () => {
    await withResolver(false, async (res) => {
      for (const bad of [
        'did:web:10.0.0.1',
        'did:web:127.0.0.1',
        'did:web:192.168.1.1',
        'did:web:host.local',
        'did:web:example.com:path:alice',
        'did:web:example.com%3A8080',
      ]) {
        expect((await res.resolve(bad)).status, bad).toBe('failed')
      }
    })
    expect(lookups).toEqual([])
  })
})
