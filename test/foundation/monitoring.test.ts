/**
 * monitoring/: the Grafana dashboard and the Prometheus alerting rules name only
 * metrics a running relay exports (scraped from a real one), and have the shape
 * Grafana and Prometheus load.
 */
import { readFileSync } from 'node:fs'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { parse } from 'yaml'
import type { Relay } from '../../src/relay.js'
import { createPostgresDatabase } from '../helpers/db.js'
import { startTestRelay } from '../helpers/relay.js'

const read = (path: string) => readFileSync(new URL(`../../${path}`, import.meta.url), 'utf8')

interface Rule {
  alert: string
  expr: string
  for?: string
  labels: { severity: string }
  annotations: { summary: string; description?: string }
}
const alerts = parse(read('monitoring/alerts.yml')) as { groups: { name: string; rules: Rule[] }[] }
interface Panel {
  id: number
  type: string
  title: string
  datasource?: { uid: string }
  targets?: { expr: string; refId: string }[]
  gridPos: { x: number; y: number; w: number; h: number }
}
const dashboard = JSON.parse(read('monitoring/grafana-dashboard.json')) as { uid: string; title: string; panels: Panel[]; templating: { list: { name: string }[] } }

const rules = alerts.groups.flatMap((g) => g.rules)
const expressions = [...rules.map((r) => r.expr), ...dashboard.panels.flatMap((p) => (p.targets ?? []).map((t) => t.expr))]

/** Metric names in PromQL: identifiers before a selector `{` or range `[`, or inside a function call, minus PromQL's own words. */
function metricNames(expr: string): string[] {
  const words = expr.replace(/"[^"]*"/g, '""').replace(/\[[^\]]*\]/g, '[]').match(/[a-zA-Z_:][a-zA-Z0-9_:]*/g) ?? []
  const promql = new Set(['sum', 'max', 'min', 'by', 'rate', 'increase', 'topk', 'histogram_quantile', 'predict_linear', 'and', 'or', 'e9', 'le', 'job'])
  const labels = new Set(['reason', 'state', 'host', 'event', 'level'])
  return [...new Set(words.filter((w) => !promql.has(w) && !labels.has(w) && !w.startsWith('$') && !/^\d/.test(w)))]
}
/** A histogram's series (`_bucket`, `_sum`, `_count`) belong to its family. */
const family = (name: string) => name.replace(/_(bucket|sum|count)$/, '')

describe('monitoring files', () => {
  let relay: Relay
  let drop: () => Promise<void>
  let exported: Map<string, string>

  beforeAll(async () => {
    const db = await createPostgresDatabase()
    drop = db.drop
    relay = await startTestRelay({ databaseUrl: db.url, plcUrl: 'http://127.0.0.1:1' })
    // Hosts for relay_hosts_account_limit, written before the first scrape (the crawler, already started, leaves them alone).
    const host = (hostname: string, account_count: number, account_limit: number, status: 'active' | 'banned' = 'active') => ({ hostname, ssl: false, account_count, account_limit, status })
    await relay.storage.db
      .insertInto('host')
      .values([host('near.test', 95, 100), host('full.test', 100, 100), host('banned.test', 100, 100, 'banned'), host('closed.test', 0, 0), host('roomy.test', 10, 100), host('huge.test', 2_000_000_000, 2_000_000_000)])
      .execute()
    const text = await (await fetch(`http://127.0.0.1:${relay.metricsAddress.port}/metrics`)).text()
    exported = new Map([...text.matchAll(/^# TYPE (\S+) (\S+)$/gm)].map((m) => [m[1]!, m[2]!]))
  }, 60_000)

  afterAll(async () => {
    await relay?.stop()
    await drop?.()
  })

  it('every metric the alerts and the dashboard name is exported by a running relay', () => {
    const named = new Set(expressions.flatMap(metricNames))
    // Sanity: the extraction found the metrics, and some of each kind.
    expect(named.size).toBeGreaterThan(30)
    for (const name of named) {
      if (name === 'up') continue // Prometheus's own, per scrape target
      const type = exported.get(family(name))
      expect(type, `${name} is not on /metrics`).toBeDefined()
      if (family(name) !== name) expect(type, `${name}: only histograms have _bucket/_sum/_count`).toBe('histogram')
    }
  })

  it('the metrics added for alerting carry values', async () => {
    const text = await (await fetch(`http://127.0.0.1:${relay.metricsAddress.port}/metrics`)).text()
    expect(Number(/^relay_database_size_bytes (\d+)/m.exec(text)?.[1])).toBeGreaterThan(1_000_000)
    expect(Number(/^relay_data_dir_filesystem_bytes\{state="total"\} (\d+)/m.exec(text)?.[1])).toBeGreaterThan(0)
    // near.test and full.test are at 90% or more; full.test is at its limit; banned and limit-0 hosts are left out.
    // huge.test: a limit near int4's top, whose percentage overflowed int4 before the count was in int8
    expect(text).toMatch(/^relay_hosts_account_limit\{level="near"\} 3$/m)
    expect(text).toMatch(/^relay_hosts_account_limit\{level="full"\} 2$/m)
    expect(text).toMatch(/^relay_upstream_rate_limited_hosts 0$/m)
  })

  it('alerts.yml: one group of complete rules covering what an operator is woken for', () => {
    expect(alerts.groups.length).toBeGreaterThan(0)
    for (const r of rules) {
      expect(r.alert, JSON.stringify(r)).toMatch(/^Relay[A-Za-z]+$/)
      expect(['page', 'warn']).toContain(r.labels.severity)
      expect(r.annotations.summary.length).toBeGreaterThan(10)
      expect(balanced(r.expr), r.alert).toBe(true)
      if (r.for) expect(r.for).toMatch(/^\d+[smh]$/)
    }
    expect(new Set(rules.map((r) => r.alert)).size).toBe(rules.length)
    const names = rules.map((r) => r.alert)
    for (const needed of ['RelayHostNearAccountLimit', 'RelayIngestStalled', 'RelayConsumersCutOff', 'RelayDatabaseCommitsFailing', 'RelayDataDiskFilling'])
      expect(names).toContain(needed)
  })

  it('grafana-dashboard.json: unique panel ids, every query on the datasource variable, panels inside the 24-column grid', () => {
    expect(dashboard.uid).toBe('atrelay')
    expect(dashboard.templating.list.map((v) => v.name)).toEqual(['datasource', 'job'])
    const ids = dashboard.panels.map((p) => p.id)
    expect(new Set(ids).size).toBe(ids.length)
    for (const p of dashboard.panels) {
      expect(p.gridPos.x + p.gridPos.w, p.title).toBeLessThanOrEqual(24)
      if (p.type === 'row') continue
      expect(p.datasource?.uid, p.title).toBe('${datasource}')
      expect(p.targets?.length, p.title).toBeGreaterThan(0)
      for (const t of p.targets ?? []) expect(balanced(t.expr), `${p.title}: ${t.expr}`).toBe(true)
    }
    const titles = dashboard.panels.map((p) => p.title.toLowerCase()).join('\n')
    for (const topic of ['dropped events by reason', 'consumers', 'lag', 'connection pool', 'memory']) expect(titles).toContain(topic)
  })
})

function balanced(expr: string): boolean {
  const pairs: Record<string, string> = { ')': '(', ']': '[', '}': '{' }
  const stack: string[] = []
  for (const c of expr.replace(/"[^"]*"/g, '""')) {
    if ('([{'.includes(c)) stack.push(c)
    else if (c in pairs && stack.pop() !== pairs[c]) return false
  }
  return stack.length === 0
}
