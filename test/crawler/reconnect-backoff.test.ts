import { describe, expect, it } from 'vitest'
import { HEALTHY_AFTER_REFUSAL_MS, ReconnectBackoff } from '../../src/crawler/reconnect-backoff.js'

const opts = { baseMs: 100, maxMs: 10_000 }

describe('ReconnectBackoff', () => {
  it('an ordinary failure starts over on the next delivered event', () => {
    const b = new ReconnectBackoff(opts)
    b.failed(false, undefined)
    b.failed(false, undefined)
    expect(b.attempt).toBe(2)
    b.delivered(1_000, 1_001)
    expect(b.attempt).toBe(0)
  })

  it('after a refused frame, events reset it only on a connection healthy for HEALTHY_AFTER_REFUSAL_MS', () => {
    const b = new ReconnectBackoff(opts)
    // good event, bad frame, reconnect, good event, bad frame …: the count keeps growing
    for (let i = 1; i <= 5; i++) {
      b.delivered(0, 10)
      b.failed(true, undefined)
      expect(b.attempt).toBe(i)
    }
    // a clean close in between does not count as healthy either
    b.delivered(0, 10)
    b.failed(false, undefined)
    expect(b.attempt).toBe(6)
    b.delivered(5_000, 5_000 + HEALTHY_AFTER_REFUSAL_MS - 1)
    expect(b.attempt).toBe(6)
    b.delivered(5_000, 5_000 + HEALTHY_AFTER_REFUSAL_MS)
    expect(b.attempt).toBe(0)
    // healthy again: the next ordinary failure resets on the first event
    b.failed(false, undefined)
    b.delivered(0, 1)
    expect(b.attempt).toBe(0)
  })

  it('delays stay within the growing ceiling and honour Retry-After', () => {
    const b = new ReconnectBackoff(opts)
    for (let i = 1; i <= 8; i++) {
      const delay = b.failed(true, undefined)
      expect(delay).toBeLessThan(Math.min(opts.maxMs, opts.baseMs * 2 ** (i - 1)))
    }
    expect(b.failed(false, 30_000)).toBe(30_000)
    b.reset()
    expect(b.attempt).toBe(0)
  })
})
