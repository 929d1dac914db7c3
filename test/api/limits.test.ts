/** The pieces under the public-traffic limits: the non-delaying token bucket, the bounded semaphore, client addresses. */
import type { IncomingMessage } from 'node:http'
import { describe, expect, it } from 'vitest'
import { clientAddress, clientKey, isLoopback } from '../../src/api/client-address.js'
import { Semaphore } from '../../src/semaphore.js'
import { KeyedTokenBucket } from '../../src/identity/rate-limit.js'

describe('KeyedTokenBucket.tryTake', () => {
  it('allows the burst, then refuses without going into debt, and refills with time', () => {
    let now = 0
    const bucket = new KeyedTokenBucket({ ratePerSec: 2, burst: 3 }, { now: () => now })
    expect([1, 2, 3].map(() => bucket.tryTake('a').remaining)).toEqual([2, 1, 0])
    const refused = bucket.tryTake('a')
    expect(refused).toMatchObject({ allowed: false, remaining: 0, retryAfterMs: 500, resetMs: 1500 })
    // Refusals take nothing: one token back after half a second, however often the client asked.
    bucket.tryTake('a')
    now = 500
    expect(bucket.tryTake('a').allowed).toBe(true)
    expect(bucket.tryTake('a').allowed).toBe(false)
    expect(bucket.tryTake('b').allowed).toBe(true)
  })

  it('forgets the least recently seen keys beyond maxKeys (a forgotten key starts full)', () => {
    const bucket = new KeyedTokenBucket({ ratePerSec: 0.001, burst: 1 }, { maxKeys: 2, now: () => 0 })
    expect(bucket.tryTake('a').allowed).toBe(true)
    expect(bucket.tryTake('a').allowed).toBe(false)
    bucket.tryTake('b')
    bucket.tryTake('c')
    expect(bucket.tryTake('a').allowed).toBe(true)
  })
})

describe('Semaphore.tryAcquire', () => {
  it('grants free slots, queues at most maxWaiting, refuses beyond, and hands a released slot to the next waiter', async () => {
    const s = new Semaphore(1)
    const first = await s.tryAcquire({ maxWaiting: 1, timeoutMs: 60_000 })
    expect(first).toBeDefined()
    const second = s.tryAcquire({ maxWaiting: 1, timeoutMs: 60_000 })
    expect(await s.tryAcquire({ maxWaiting: 1, timeoutMs: 60_000 })).toBeUndefined()
    expect(s.stats).toEqual({ active: 1, waiting: 1, limit: 1 })
    first!()
    const granted = await second
    expect(granted).toBeDefined()
    expect(s.stats).toEqual({ active: 1, waiting: 0, limit: 1 })
    granted!()
    expect(s.stats.active).toBe(0)
  })

  it('gives up a wait that runs out and leaves the queue', async () => {
    const s = new Semaphore(1)
    const held = await s.acquire()
    expect(await s.tryAcquire({ maxWaiting: 5, timeoutMs: 5 })).toBeUndefined()
    expect(s.stats).toEqual({ active: 1, waiting: 0, limit: 1 })
    held()
    expect(s.stats.active).toBe(0)
  })
})

describe('Semaphore.run', () => {
  it('runs at most the limit at once and gives the slot back when the work throws', async () => {
    const s = new Semaphore(2)
    let running = 0
    let most = 0
    const work = async (fail: boolean) => {
      running++
      most = Math.max(most, running)
      await new Promise((resolve) => setImmediate(resolve))
      running--
      if (fail) throw new Error('boom')
      return 'done'
    }
    const results = await Promise.allSettled(Array.from({ length: 6 }, (_, i) => s.run(() => work(i % 2 === 0))))
    expect(most).toBe(2)
    expect(results.filter((r) => r.status === 'rejected')).toHaveLength(3)
    expect(results.filter((r) => r.status === 'fulfilled').map((r) => (r as PromiseFulfilledResult<string>).value)).toEqual(['done', 'done', 'done'])
    expect(s.stats).toEqual({ active: 0, waiting: 0, limit: 2 })
  })
})

describe('client addresses', () => {
  const req = (remoteAddress: string, headers: Record<string, string> = {}) => ({ socket: { remoteAddress }, headers }) as unknown as IncomingMessage

  it('uses the right-most address of the proxy header, else the socket', () => {
    expect(clientAddress(req('127.0.0.1', { 'x-forwarded-for': '10.0.0.1, 203.0.113.9' }), 'x-forwarded-for')).toBe('203.0.113.9')
    expect(clientAddress(req('127.0.0.1', { 'x-forwarded-for': 'garbage' }), 'x-forwarded-for')).toBe('127.0.0.1')
    expect(clientAddress(req('::ffff:198.51.100.4', { 'x-forwarded-for': '203.0.113.9' }), undefined)).toBe('198.51.100.4')
    expect(clientAddress(req('10.1.1.1', { 'x-forwarded-for': '[2001:DB8::1]' }), 'x-forwarded-for')).toBe('2001:db8::1')
  })

  it('keys IPv6 by /64 and IPv4 by address; knows loopback', () => {
    expect(clientKey('2001:db8:1:2:aaaa::1')).toBe('2001:0db8:0001:0002::/64')
    expect(clientKey('2001:db8:1:2::ffff')).toBe('2001:0db8:0001:0002::/64')
    expect(clientKey('::1')).toBe('0000:0000:0000:0000::/64')
    expect(clientKey('203.0.113.9')).toBe('203.0.113.9')
    expect(isLoopback('127.0.0.2') && isLoopback('::1')).toBe(true)
    expect(isLoopback('10.0.0.1')).toBe(false)
  })
})
