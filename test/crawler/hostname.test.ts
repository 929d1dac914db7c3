import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { banCandidates, findDomainBan, HostnameError, parseHostname, TrustedDomains } from '../../src/crawler/hostname.js'
import { hostRateLimits, HostRateLimiter, SlidingWindow } from '../../src/crawler/rate-limit.js'
import { backoffCeiling, backoffDelay } from '../../src/backoff.js'
import { createTestDatabase, type TestDatabase } from '../helpers/db.js'

const secure = { allowInsecureHosts: false }
const dev = { allowInsecureHosts: true }

function reason(input: string, opts = secure): string | undefined {
  try {
    parseHostname(input, opts)
    return undefined
  } catch (err) {
    expect(err).toBeInstanceOf(HostnameError)
    return (err as HostnameError).reason
  }
}

describe('parseHostname', () => {
  it.each([
    ['pds.example.com', 'pds.example.com'],
    ['PDS.Example.COM', 'pds.example.com'],
    ['  pds.example.com  ', 'pds.example.com'],
    ['https://pds.example.com', 'pds.example.com'],
    ['https://pds.example.com/', 'pds.example.com'],
    ['wss://pds.example.com', 'pds.example.com'],
    ['HTTPS://pds.example.com', 'pds.example.com'],
    ['https://pds.example.com:443', 'pds.example.com'],
    ['pds.example.com.', 'pds.example.com'],
    ['a-b.c-d.example.co.uk', 'a-b.c-d.example.co.uk'],
  ])('accepts %j as %s over TLS', (input, hostname) => {
    expect(parseHostname(input, secure)).toEqual({ hostname, ssl: true })
  })

  it.each([
    ['', 'empty'],
    ['   ', 'empty'],
    ['ftp://pds.example.com', 'scheme'],
    ['javascript://pds.example.com', 'scheme'],
    ['https://pds.example.com/xrpc', 'path'],
    ['pds.example.com/path', 'path'],
    ['pds.example.com?x=1', 'path'],
    ['https://user:pw@pds.example.com', 'path'],
    ['1.2.3.4', 'ip'],
    ['https://8.8.8.8', 'ip'],
    ['[2001:db8::1]', 'ip'],
    ['127.0.0.1:2583', 'ip'],
    ['0x7f.1', 'ip'],
    ['pds', 'syntax'],
    ['pds_x.example.com', 'syntax'],
    ['-pds.example.com', 'syntax'],
    ['pds.123', 'syntax'],
    ['pds..example.com', 'syntax'],
    ['pdś.example.com', 'syntax'],
    ['pds.example.com:8080', 'port'],
    ['https://pds.example.com:8443', 'port'],
    ['http://pds.example.com', 'insecure'],
    ['ws://pds.example.com', 'insecure'],
    ['pds.local', 'reserved'],
    ['pds.example', 'reserved'],
    ['pds.internal', 'reserved'],
    ['pds.test', 'reserved'],
    ['localhost', 'insecure'],
    ['localhost:2583', 'insecure'],
    ['ws://localhost:2583', 'insecure'],
  ])('rejects %j (%s)', (input, why) => {
    expect(reason(input)).toBe(why)
  })

  it('allows localhost:<port> over plain ws only in development', () => {
    expect(parseHostname('localhost:2583', dev)).toEqual({ hostname: 'localhost:2583', ssl: false })
    expect(parseHostname('ws://localhost:2583', dev)).toEqual({ hostname: 'localhost:2583', ssl: false })
    expect(parseHostname('http://LOCALHOST:2583/', dev)).toEqual({ hostname: 'localhost:2583', ssl: false })
    expect(parseHostname('localhost', dev)).toEqual({ hostname: 'localhost', ssl: false })
    expect(parseHostname('pds.test', dev)).toEqual({ hostname: 'pds.test', ssl: true })
    // still no ports or plain http for real names, no IPs, no localhost subdomains
    expect(reason('pds.example.com:2583', dev)).toBe('port')
    expect(reason('http://pds.example.com', dev)).toBe('insecure')
    expect(reason('127.0.0.1:2583', dev)).toBe('ip')
    expect(reason('evil.localhost:2583', dev)).toBe('syntax')
  })
})

describe('TrustedDomains', () => {
  const trusted = new TrustedDomains(['*.host.bsky.network', 'pds.example.com', ' *.Big.Example '])
  it.each([
    ['morel.us-east.host.bsky.network', true],
    ['x.host.bsky.network', true],
    ['host.bsky.network', false],
    ['evilhost.bsky.network', false],
    ['host.bsky.network.evil.com', false],
    ['pds.example.com', true],
    ['sub.pds.example.com', false],
    ['a.big.example', true],
    ['other.example.com', false],
  ])('%s → %s', (hostname, expected) => {
    expect(trusted.matches(hostname)).toBe(expected)
  })

  it('matches nothing when empty', () => {
    expect(new TrustedDomains([]).matches('pds.example.com')).toBe(false)
  })
})

describe('domain bans', () => {
  let tdb: TestDatabase
  beforeAll(async () => {
    tdb = await createTestDatabase('postgres')
    await tdb.storage.db.insertInto('domain_ban').values([{ domain: 'evil.com' }, { domain: 'bad.pds.example.org' }, { domain: 'localhost' }]).execute()
  })
  afterAll(async () => {
    await tdb.cleanup()
  })

  it('lists the hostname and every parent suffix', () => {
    expect(banCandidates('a.b.example.com')).toEqual(['a.b.example.com', 'b.example.com', 'example.com', 'com'])
    expect(banCandidates('localhost:2583')).toEqual(['localhost'])
  })

  it.each([
    ['evil.com', 'evil.com'],
    ['pds.evil.com', 'evil.com'],
    ['a.b.c.evil.com', 'evil.com'],
    ['notevil.com', undefined],
    ['evil.com.example.net', undefined],
    ['bad.pds.example.org', 'bad.pds.example.org'],
    ['x.bad.pds.example.org', 'bad.pds.example.org'],
    ['pds.example.org', undefined],
    ['localhost:2583', 'localhost'],
  ])('%s → %s', async (hostname, ban) => {
    expect(await findDomainBan(tdb.storage.db, hostname)).toBe(ban)
  })
})

describe('rate limits', () => {
  it('scales with the account limit; trusted hosts get the large limits', () => {
    expect(hostRateLimits(100, false)).toEqual({ perSecond: 50, perHour: 2_600, perDay: 21_000 })
    expect(hostRateLimits(10_000, false)).toEqual({ perSecond: 60, perHour: 12_500, perDay: 120_000 })
    expect(hostRateLimits(100, true)).toEqual({ perSecond: 5_000, perHour: 50_000_000, perDay: 500_000_000 })
  })

  it('sliding window admits the limit, then waits until the weighted count allows one more', () => {
    const w = new SlidingWindow(10, 1_000)
    const t0 = 1_000_000 // window start
    for (let i = 0; i < 10; i++) {
      expect(w.waitMs(t0 + i)).toBe(0)
      w.record(t0 + i)
    }
    expect(w.waitMs(t0 + 10)).toBe(990) // current window is full: wait for the next one
    // next window: previous=10 weighted by remaining overlap; one more fits after 10% of it
    expect(w.waitMs(t0 + 1_000)).toBe(100)
    expect(w.waitMs(t0 + 1_100)).toBe(0)
    // two windows later the old count no longer weighs
    expect(w.waitMs(t0 + 2_000)).toBe(0)
    expect(w.count(t0 + 2_500)).toBe(0)
  })

  it('host limiter takes the strictest window and follows limit changes', () => {
    const l = new HostRateLimiter({ perSecond: 2, perHour: 3, perDay: 100 })
    const t = 3_600_000 * 10
    l.record(t)
    l.record(t)
    expect(l.waitMs(t)).toBeGreaterThan(0)
    expect(l.waitMs(t + 1_000)).toBe(500) // the previous second still weighs fully at its end
    expect(l.waitMs(t + 2_000)).toBe(0) // per second clears, per hour has room for one more
    l.record(t + 2_000)
    expect(l.waitMs(t + 4_000)).toBeGreaterThan(1_000) // per hour is full
    l.setLimits({ perSecond: 2, perHour: 100, perDay: 100 })
    expect(l.waitMs(t + 4_000)).toBe(0)
    expect(l.state(t + 4_000)).toMatchObject({ perHour: 100, counts: { perHour: 3 } })
  })

  it('backoff uses full jitter below an exponentially growing, capped ceiling', () => {
    const opts = { baseMs: 100, maxMs: 1_000 }
    expect(backoffDelay(1, opts, () => 0.999)).toBe(99)
    expect(backoffDelay(2, opts, () => 0.999)).toBe(199)
    expect(backoffDelay(4, opts, () => 0.999)).toBe(799)
    expect(backoffDelay(5, opts, () => 0.999)).toBe(999)
    expect(backoffDelay(50, opts, () => 0.999)).toBe(999)
    expect(backoffDelay(3, opts, () => 0)).toBe(0)
  })

  it('the same backoff without jitter serves internal retries, with another growth factor', () => {
    expect([1, 2, 3, 8, 1_000].map((a) => backoffCeiling(a, { baseMs: 50, maxMs: 5_000 }))).toEqual([50, 100, 200, 5_000, 5_000])
    expect([1, 2, 3, 4].map((a) => backoffCeiling(a, { baseMs: 1_000, maxMs: 30_000, factor: 3 }))).toEqual([1_000, 3_000, 9_000, 27_000])
    expect(backoffCeiling(5, { baseMs: 1_000, maxMs: 30_000, factor: 3 })).toBe(30_000)
  })
})
