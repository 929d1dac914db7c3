/** The report's charts from the raw results: RSS, events/s, latency per minute and per second, listRepos pages, PLC misses. */
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { renderChart, type Band, type Marker, type Series } from './charts.js'
import type { NetworkResults } from './report.js'

const min = (s: number) => Math.round((s / 60) * 1000) / 1000

export async function writeCharts(r: NetworkResults, dir: string, relDir: string): Promise<{ file: string; title: string }[]> {
  const tl = r.timeline
  const bands: Band[] = (tl?.phases ?? []).filter((p) => p.toS > p.fromS).map((p) => ({ from: min(p.fromS), to: min(p.toS), phase: p.name }))
  const markers: Marker[] = []
  if (tl?.restartStorm) markers.push({ t: min(tl.restartStorm.atS), label: 'kill -9, restart' })
  if (tl?.catchUp) {
    markers.push({ t: min(tl.catchUp.atS), label: 'kill -9 (catch-up)' })
    markers.push({ t: min(tl.catchUp.atS + tl.catchUp.downS), label: 'relay back' })
  }
  for (const d of tl?.partitionDrops ?? []) markers.push({ t: min(d.atS), label: 'partition dropped' })

  const samples = r.samples
  const rss: Series[] = samples.filter((s) => s.relayUp).map((s) => ({ t: min(s.t), value: s.rssMB, series: 'relay RSS (MB)' }))
  const rate: Series[] = []
  for (let i = 1; i < samples.length; i++) {
    const a = samples[i - 1]!
    const b = samples[i]!
    if (b.t <= a.t) continue
    rate.push({ t: min(b.t), value: (b.seq - a.seq) / (b.t - a.t), series: 'relay events/s (sequencer)' })
    rate.push({ t: min(b.t), value: (b.hostFrames - a.hostFrames) / (b.t - a.t), series: 'hosts events/s (generated)' })
    rate.push({ t: min(b.t), value: ((b.relayCpu - a.relayCpu) / (b.t - a.t)) * 1000, series: 'relay CPU (milli-cores)' })
  }
  const perMinute: Series[] = r.minutes.flatMap((m) => [
    { t: min(m.t + 30), value: Math.max(0.1, m.p50), series: 'p50' },
    { t: min(m.t + 30), value: Math.max(0.1, m.p99), series: 'p99' },
  ])
  const perSecond: Series[] = r.seconds.flatMap((m) => [
    { t: min(m.t), value: Math.max(0.1, m.p50), series: 'p50' },
    { t: min(m.t), value: Math.max(0.1, m.p99), series: 'p99' },
  ])
  const plc: Series[] = []
  for (let i = 1; i < samples.length; i++) {
    const a = samples[i - 1]!
    const b = samples[i]!
    if (b.t > a.t) plc.push({ t: min(b.t), value: (b.plcResolutions - a.plcResolutions) / (b.t - a.t), series: 'PLC stand-in resolutions/s' })
    plc.push({ t: min(b.t), value: b.connectedHosts, series: 'connected hosts' })
  }
  const charts: { name: string; title: string; spec: Parameters<typeof renderChart>[0] }[] = [
    { name: 'rss', title: 'Relay RSS over time', spec: { title: 'Relay RSS (MB)', yTitle: 'MB', data: rss, bands, markers } },
    { name: 'events', title: 'Events per second and relay CPU', spec: { title: 'Events/s and relay CPU', yTitle: 'per second', data: rate, bands, markers } },
    { name: 'latency-minute', title: 'Host → consumer latency per minute', spec: { title: 'Host → consumer latency per minute (ms, log)', yTitle: 'ms', data: perMinute, bands, markers, logY: true, point: true } },
    { name: 'latency-second', title: 'Host → consumer latency per second', spec: { title: 'Host → consumer latency per second (ms, log)', yTitle: 'ms', data: perSecond, bands, markers, logY: true, point: true } },
    { name: 'plc-hosts', title: 'PLC resolutions and connected hosts', spec: { title: 'PLC stand-in resolutions/s (cache misses) and connected hosts', yTitle: 'count', data: plc, bands, markers } },
  ]
  const lr = tl?.queries?.listRepos
  if (lr) {
    charts.push({
      name: 'listrepos',
      title: 'listRepos page time by cursor depth',
      spec: { title: 'listRepos: time per page of 1,000 by cursor depth', yTitle: 'ms', xTitle: 'accounts before the page', data: lr.points.map((x) => ({ t: x.depth, value: x.ms, series: 'page time (ms)' })), point: true },
    })
  }
  // At most ~250 points per series: the SVGs stay small enough to commit.
  for (const c of charts) c.spec.data = thin(c.spec.data, 250)
  const out: { file: string; title: string }[] = []
  for (const c of charts) {
    if (c.spec.data.length === 0) continue
    const file = `${c.name}.svg`
    writeFileSync(join(dir, file), await renderChart(c.spec))
    out.push({ file: `${relDir}/${file}`, title: c.title })
  }
  return out
}

/** Keeps every k-th point of each series so none has more than `max`. */
function thin(data: Series[], max: number): Series[] {
  const counts = new Map<string, number>()
  for (const d of data) counts.set(d.series, (counts.get(d.series) ?? 0) + 1)
  const seen = new Map<string, number>()
  return data.filter((d) => {
    const k = Math.ceil((counts.get(d.series) ?? 1) / max)
    const i = seen.get(d.series) ?? 0
    seen.set(d.series, i + 1)
    return i % k === 0
  })
}
