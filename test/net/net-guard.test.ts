import diagnosticsChannel from 'node:diagnostics_channel'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { request } from 'undici'
import {
  assertAllowedAddresses,
  assertPublicHost,
  assertPublicUrl,
  createGuardedDispatcher,
  findNetGuardError,
  isForbiddenAddress,
  isLoopbackAddress,
  NetGuardError,
  type AddressLookup,
} from '../../src/net/net-guard.js'
import { fetchBounded, FetchError } from '../../src/net/http-fetch.js'
import { OriginPools } from '../../src/net/origin-pools.js'
import { waitUntil } from '../helpers/wait.js'

function reasonOf(fn: () => void): string | undefined {
  try {
    fn()
    return undefined
  } catch (err) {
    expect(err).toBeInstanceOf(NetGuardError)
    return (err as NetGuardError).reason
  }
}

describe('isForbiddenAddress', () => {
  const forbidden = [
    '0.0.0.0',
    '10.0.0.1',
    '10.255.255.255',
    '100.64.0.1',
    '127.0.0.1',
    '127.10.20.30',
    '169.254.169.254',
    '172.16.0.1',
    '172.31.255.255',
    '192.0.0.8',
    '192.0.2.1',
    '192.168.1.1',
    '198.18.0.1',
    '198.51.100.7',
    '203.0.113.9',
    '224.0.0.1',
    '239.255.255.250',
    '240.0.0.1',
    '255.255.255.255',
    '::',
    '::1',
    '0:0:0:0:0:0:0:1',
    '::ffff:127.0.0.1',
    '::ffff:10.1.2.3',
    '::ffff:7f00:1',
    '64:ff9b::192.168.0.1',
    'fc00::1',
    'fd12:3456::1',
    'fe80::1',
    'fe80::1%eth0',
    'fec0::1',
    'ff02::1',
    '2001:db8::1',
    '2001::1', // Teredo
    '2002:c0a8:0101::1', // 6to4 of 192.168.1.1
    '100::1', // discard
    '::1.2.3.4', // IPv4-compatible (deprecated)
    'not-an-ip',
  ]
  const allowed = [
    '1.1.1.1',
    '8.8.8.8',
    '172.15.255.255',
    '172.32.0.1',
    '192.169.0.1',
    '100.128.0.1',
    '2606:4700:4700::1111',
    '2a00:1450:4001:80b::200e',
    '::ffff:8.8.8.8',
    '64:ff9b::8.8.8.8',
    '2002:0808:0808::1', // 6to4 of 8.8.8.8
  ]
  it.each(forbidden)('refuses %s', (ip) => expect(isForbiddenAddress(ip)).toBe(true))
  it.each(allowed)('allows %s', (ip) => expect(isForbiddenAddress(ip)).toBe(false))

  it('recognises loopback', () => {
    for (const ip of ['127.0.0.1', '127.1.2.3', '::1', '::ffff:127.0.0.1']) expect(isLoopbackAddress(ip)).toBe(true)
    for (const ip of ['10.0.0.1', '::', '::2', '8.8.8.8', 'fe80::1']) expect(isLoopbackAddress(ip)).toBe(false)
  })
})

describe('assertPublicHost', () => {
  const prod = { allowLoopback: false }
  const dev = { allowLoopback: true }

  it('accepts public DNS names on standard ports', () => {
    expect(reasonOf(() => assertPublicHost('pds.example.com', undefined, prod))).toBeUndefined()
    expect(reasonOf(() => assertPublicHost('Bsky.Social', 443, prod))).toBeUndefined()
    expect(reasonOf(() => assertPublicHost('bsky.network', '80', prod))).toBeUndefined()
  })

  it('refuses private and loopback IP literals', () => {
    expect(reasonOf(() => assertPublicHost('10.1.2.3', undefined, prod))).toBe('forbidden_address')
    expect(reasonOf(() => assertPublicHost('192.168.0.10', 443, prod))).toBe('forbidden_address')
    expect(reasonOf(() => assertPublicHost('127.0.0.1', 443, prod))).toBe('forbidden_address')
    expect(reasonOf(() => assertPublicHost('[::1]', 443, prod))).toBe('forbidden_address')
    expect(reasonOf(() => assertPublicHost('169.254.169.254', 80, dev))).toBe('forbidden_address')
    expect(reasonOf(() => assertPublicHost('10.0.0.1', 80, dev))).toBe('forbidden_address')
  })

  it('requires DNS names rather than public IP literals', () => {
    expect(reasonOf(() => assertPublicHost('8.8.8.8', 443, prod))).toBe('ip_literal')
  })

  it('refuses localhost outside development and allows it with any port in development', () => {
    expect(reasonOf(() => assertPublicHost('localhost', 2583, prod))).toBe('forbidden_address')
    expect(reasonOf(() => assertPublicHost('localhost', 2583, dev))).toBeUndefined()
    expect(reasonOf(() => assertPublicHost('127.0.0.1', 2583, dev))).toBeUndefined()
    expect(reasonOf(() => assertPublicHost('[::1]', 2583, dev))).toBeUndefined()
  })

  it('refuses non-standard ports on public names, even in development', () => {
    expect(reasonOf(() => assertPublicHost('pds.example.com', 8080, prod))).toBe('forbidden_port')
    expect(reasonOf(() => assertPublicHost('pds.example.com', 22, dev))).toBe('forbidden_port')
    expect(reasonOf(() => assertPublicHost('pds.example.com', 'x', prod))).toBe('forbidden_port')
  })

  it('refuses invalid names and reserved TLDs', () => {
    for (const h of ['', 'nodots', '-bad.com', 'a..b', 'under_score.com', 'x.123', 'a.b.local', 'host.internal', 'x.onion', 'foo.localhost.', 'x.arpa']) {
      expect(reasonOf(() => assertPublicHost(h, undefined, prod))).not.toBeUndefined()
    }
    expect(reasonOf(() => assertPublicHost('pds.test', undefined, prod))).toBe('invalid_hostname')
    expect(reasonOf(() => assertPublicHost('pds.test', undefined, dev))).toBeUndefined()
  })

  it('checks URL schemes: https always, http only to loopback in development', () => {
    expect(reasonOf(() => assertPublicUrl(new URL('https://pds.example.com/x'), prod))).toBeUndefined()
    expect(reasonOf(() => assertPublicUrl(new URL('http://pds.example.com/x'), prod))).toBe('forbidden_scheme')
    expect(reasonOf(() => assertPublicUrl(new URL('http://pds.example.com/x'), dev))).toBe('forbidden_scheme')
    expect(reasonOf(() => assertPublicUrl(new URL('http://localhost:1234/x'), dev))).toBeUndefined()
    expect(reasonOf(() => assertPublicUrl(new URL('ftp://pds.example.com/x'), prod))).toBe('forbidden_scheme')
    expect(reasonOf(() => assertPublicUrl(new URL('https://u:p@pds.example.com/x'), prod))).toBe('invalid_hostname')
  })

  it('checks resolved addresses: any forbidden record refuses the name', () => {
    const r = (address: string) => ({ address, family: address.includes(':') ? 6 : 4 })
    expect(reasonOf(() => assertAllowedAddresses('a.example.com', [r('8.8.8.8')], prod))).toBeUndefined()
    expect(reasonOf(() => assertAllowedAddresses('a.example.com', [r('8.8.8.8'), r('10.0.0.1')], prod))).toBe('forbidden_address')
    expect(reasonOf(() => assertAllowedAddresses('a.example.com', [r('127.0.0.1')], prod))).toBe('forbidden_address')
    expect(reasonOf(() => assertAllowedAddresses('a.example.com', [r('127.0.0.1')], dev))).toBeUndefined()
    expect(reasonOf(() => assertAllowedAddresses('a.example.com', [r('fd00::1')], dev))).toBe('forbidden_address')
    expect(reasonOf(() => assertAllowedAddresses('a.example.com', [], prod))).toBe('dns_failed')
  })
})

describe('guarded dispatcher (real loopback server)', () => {
  let server: Server
  let port: number
  let hits = 0
  const lookups: string[] = []
  // Names resolve only through this table: no real DNS query is ever made.
  const table: Record<string, string> = {
    'loop.example.com': '127.0.0.1',
    'private.example.com': '10.0.0.1',
    'mixed.example.com': '192.168.1.20',
  }
  const lookup: AddressLookup = async (hostname) => {
    lookups.push(hostname)
    const address = hostname === 'localhost' ? '127.0.0.1' : table[hostname]
    if (!address) throw Object.assign(new Error(`ENOTFOUND ${hostname}`), { code: 'ENOTFOUND' })
    return [{ address, family: 4 }]
  }

  beforeAll(async () => {
    server = createServer((req, res) => {
      hits++
      if (req.url === '/redirect-private') {
        res.writeHead(302, { location: 'http://10.0.0.1/secret' }).end()
      } else if (req.url === '/redirect-private-name') {
        res.writeHead(302, { location: 'https://private.example.com/secret' }).end()
      } else if (req.url === '/redirect-loop') {
        res.writeHead(302, { location: '/redirect-loop' }).end()
      } else if (req.url === '/big') {
        res.end(Buffer.alloc(10_000, 'a'))
      } else if (req.url === '/slow') {
        setTimeout(() => res.end('late'), 2_000).unref()
      } else {
        res.end('hello')
      }
    })
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    port = (server.address() as AddressInfo).port
  })
  afterAll(async () => {
    server.closeAllConnections()
    await new Promise((resolve) => server.close(resolve))
  })

  it('connects to loopback in development mode', async () => {
    const dispatcher = createGuardedDispatcher({ allowLoopback: true, lookup })
    try {
      const res = await request(`http://localhost:${port}/`, { dispatcher })
      expect(await res.body.text()).toBe('hello')
      expect(lookups).toContain('localhost')
    } finally {
      await dispatcher.close()
    }
  })

  it('refuses before connecting when not in development mode', async () => {
    const dispatcher = createGuardedDispatcher({ allowLoopback: false, lookup })
    const before = hits
    try {
      for (const url of [`http://127.0.0.1:${port}/`, `http://[::1]:${port}/`, `http://localhost:${port}/`]) {
        const err = await request(url, { dispatcher }).then(
          () => null,
          (e: unknown) => e,
        )
        expect(findNetGuardError(err)?.reason).toBe('forbidden_address')
      }
      // a DNS name that resolves to loopback: refused after DNS, before connecting
      const err = await request('https://loop.example.com/', { dispatcher }).then(
        () => null,
        (e: unknown) => e,
      )
      expect(findNetGuardError(err)?.reason).toBe('forbidden_address')
      expect(lookups).toContain('loop.example.com')
      // a non-standard port on a public name
      const portErr = await request('https://pds.example.com:8443/', { dispatcher }).then(
        () => null,
        (e: unknown) => e,
      )
      expect(findNetGuardError(portErr)?.reason).toBe('forbidden_port')
      expect(hits).toBe(before)
    } finally {
      await dispatcher.close()
    }
  })

  it('resolves a name once per connection, and makes no socket for one that does not resolve', async () => {
    const dispatcher = createGuardedDispatcher({ allowLoopback: true, lookup })
    let sockets = 0
    const onSocket = () => sockets++
    diagnosticsChannel.subscribe('net.client.socket', onSocket)
    try {
      lookups.length = 0
      const res = await request(`http://localhost:${port}/`, { dispatcher })
      expect(await res.body.text()).toBe('hello')
      // Checked before the socket was made, and those addresses used by it: one lookup, one socket.
      expect(lookups).toEqual(['localhost'])
      expect(sockets).toBe(1)
      const err = await request('http://gone.nowhere.example.com/', { dispatcher }).then(
        () => null,
        (e: unknown) => e,
      )
      expect(findNetGuardError(err)?.reason).toBe('dns_failed')
      expect(lookups).toEqual(['localhost', 'gone.nowhere.example.com'])
      expect(sockets).toBe(1)
    } finally {
      diagnosticsChannel.unsubscribe('net.client.socket', onSocket)
      await dispatcher.close()
    }
  })

  it('keeps no pool for an origin it is done with: names that do not resolve, then a served one once idle', async () => {
    const dispatcher = createGuardedDispatcher({ allowLoopback: true, lookup })
    try {
      expect(dispatcher).toBeInstanceOf(OriginPools)
      const pools = dispatcher as OriginPools
      // A host announcing identities under ever new subdomains: each a new origin, none resolves.
      for (let i = 0; i < 20; i++) {
        const err = await request(`https://h${i}.nowhere.example.com/.well-known/atproto-did`, { dispatcher }).then(
          () => null,
          (e: unknown) => e,
        )
        expect(String((err as Error | null)?.message)).toMatch(/ENOTFOUND/)
      }
      await waitUntil(() => pools.origins === 0, 'the unresolved origins’ pools dropped')
      const res = await request(`http://localhost:${port}/`, { dispatcher })
      expect(await res.body.text()).toBe('hello')
      expect(pools.origins).toBe(1)
      // Its idle connection closes after the keep-alive timeout (4 s), and the pool goes with it.
      await waitUntil(() => pools.origins === 0, 'the idle pool dropped', 15_000)
    } finally {
      await dispatcher.close()
    }
  })

  it('refuses private addresses after DNS, even in development mode', async () => {
    const dispatcher = createGuardedDispatcher({ allowLoopback: true, lookup })
    try {
      for (const url of ['https://private.example.com/', 'https://mixed.example.com/', 'http://10.0.0.1/', 'http://192.168.0.1/']) {
        const err = await request(url, { dispatcher }).then(
          () => null,
          (e: unknown) => e,
        )
        expect(findNetGuardError(err)?.reason, url).toBe('forbidden_address')
      }
    } finally {
      await dispatcher.close()
    }
  })

  it('fetchBounded re-checks every redirect hop and bounds size and redirects', async () => {
    const dev = { allowLoopback: true }
    const dispatcher = createGuardedDispatcher({ allowLoopback: true, lookup })
    const opts = { dispatcher, checkUrl: (u: URL) => assertPublicUrl(u, dev), maxBytes: 1000, timeoutMs: 5_000, maxRedirects: 3 }
    const fail = (url: string, o = opts) =>
      fetchBounded(url, o).then(
        () => null,
        (e: unknown) => e as FetchError,
      )
    try {
      const ok = await fetchBounded(`http://localhost:${port}/`, opts)
      expect(ok.status).toBe(200)
      expect(ok.body.toString()).toBe('hello')

      const before = hits
      let err = await fail(`http://localhost:${port}/redirect-private`)
      expect(err).toBeInstanceOf(FetchError)
      expect(err?.reason).toBe('forbidden_address')
      err = await fail(`http://localhost:${port}/redirect-private-name`)
      expect(err?.reason).toBe('forbidden_address')
      expect(hits - before).toBe(2) // only the two redirecting requests reached the server

      err = await fail(`http://localhost:${port}/redirect-loop`)
      expect(err?.reason).toBe('too_many_redirects')
      err = await fail(`http://localhost:${port}/big`)
      expect(err?.reason).toBe('too_large')
      err = await fail(`http://localhost:${port}/slow`, { ...opts, timeoutMs: 200 })
      expect(err?.reason).toBe('timeout')

      const noFollow = await fetchBounded(`http://localhost:${port}/redirect-private`, { ...opts, maxRedirects: 0 })
      expect(noFollow.status).toBe(302)
    } finally {
      await dispatcher.close()
    }
  })
})
