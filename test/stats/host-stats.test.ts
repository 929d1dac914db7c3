import { Registry } from 'prom-client'
import { describe, expect, it } from 'vitest'
import { HostStats } from '../../src/stats/host-stats.js'

describe('HostStats', () => {
  it('counts per host and reason, and bounds the Prometheus host label', async () => {
    const registry = new Registry()
    const stats = new HostStats(registry, 2)
    for (const host of ['a.example', 'b.example', 'c.example', 'd.example']) {
      stats.received(host, '#commit')
      stats.dropped(host, 'bad-signature')
    }
    stats.accepted('a.example', '#commit')
    stats.discontinuity('a.example')
    expect(stats.snapshot('a.example')).toMatchObject({ received: 1, accepted: 1, dropped: { 'bad-signature': 1 }, discontinuities: 1 })
    expect(stats.snapshot('d.example').dropped).toEqual({ 'bad-signature': 1 })
    expect(stats.droppedByReason()).toEqual({ 'bad-signature': 4 })
    const text = await registry.metrics()
    expect(text).toContain('relay_events_dropped_total{host="a.example",reason="bad-signature"} 1')
    expect(text).toContain('relay_events_dropped_total{host="other",reason="bad-signature"} 2')
    expect(text).not.toContain('c.example')
  })

  it('clips a host-chosen error message it keeps', () => {
    const stats = new HostStats(new Registry())
    stats.setLastError('a.example', 'x'.repeat(100_000))
    const kept = stats.snapshot('a.example').lastError!.message
    expect(kept.length).toBeLessThanOrEqual(501)
    expect(kept.endsWith('…')).toBe(true)
    stats.setLastError('a.example', 'short')
    expect(stats.snapshot('a.example').lastError!.message).toBe('short')
  })
})
