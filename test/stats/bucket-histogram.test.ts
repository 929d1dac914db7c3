/**
 * BucketHistogram exposes exactly what prom-client's Histogram exposes for the
 * same observations (bounds included: `le` is "less than or equal").
 */
import { Histogram, Registry } from 'prom-client'
import { describe, expect, it } from 'vitest'
import { BucketHistogram } from '../../src/stats/bucket-histogram.js'

const BUCKETS = [0.001, 0.01, 0.1, 1]

function pair() {
  const registry = new Registry()
  const reference = new Histogram({ name: 'h_reference', help: 'h', labelNames: ['kind', 'mode'], buckets: BUCKETS, registers: [registry] })
  const fast = new BucketHistogram({ name: 'h_fast', help: 'h', labelNames: ['kind', 'mode'] as const, buckets: BUCKETS, registers: [registry] })
  return { registry, reference, fast }
}

/** The exposition lines of one metric, its name normalised. */
async function lines(registry: Registry, name: string): Promise<string[]> {
  const text = await registry.metrics()
  return text
    .split('\n')
    .filter((l) => l.startsWith(name) || l.includes(` ${name} `))
    .map((l) => l.replaceAll(name, 'h'))
}

describe('BucketHistogram', () => {
  it('exposes the same buckets, sum and count as prom-client for the same values', async () => {
    const { registry, reference, fast } = pair()
    const values = [0, 0.001, 0.0010001, 0.005, 0.01, 0.2, 1, 1.5, 30, ...Array.from({ length: 200 }, (_, i) => (i * 7919) % 1300 / 1000)]
    const commit = fast.labels({ kind: 'commit', mode: 'workers' })
    const sync = fast.labels({ kind: 'sync', mode: 'workers' })
    values.forEach((v, i) => {
      const kind = i % 3 === 0 ? 'sync' : 'commit'
      reference.observe({ kind, mode: 'workers' }, v)
      ;(kind === 'sync' ? sync : commit).observe(v)
    })
    // Series come in the order they were first bound or observed: compare as sets of lines.
    const expected = (await lines(registry, 'h_reference')).sort()
    expect(expected.length).toBeGreaterThan(10)
    expect((await lines(registry, 'h_fast')).sort()).toEqual(expected)
    // The same series object comes back for the same labels.
    expect(fast.labels({ kind: 'commit', mode: 'workers' })).toBe(commit)
  })

  it('is readable as JSON and zeroed by the registry, keeping bound series usable', async () => {
    const { registry, fast } = pair()
    const series = fast.labels({ kind: 'commit', mode: 'inline' })
    series.observe(0.05)
    const json = await registry.getMetricsAsJSON()
    const metric = json.find((m) => m.name === 'h_fast') as unknown as { values: { metricName: string; value: number }[] }
    expect(metric.values.find((v) => v.metricName === 'h_fast_count')?.value).toBe(1)
    registry.resetMetrics()
    expect((await lines(registry, 'h_fast')).find((l) => l.startsWith('h_count'))).toBe('h_count{kind="commit",mode="inline"} 0')
    series.observe(2)
    expect((await lines(registry, 'h_fast')).find((l) => l.startsWith('h_bucket{le="+Inf"') || l.includes('le="+Inf"'))).toMatch(/ 1$/)
  })

  it('refuses buckets that do not ascend', () => {
    expect(() => new BucketHistogram({ name: 'bad', help: 'h', labelNames: [], buckets: [1, 1], registers: [] })).toThrow(/ascend/)
  })
})
