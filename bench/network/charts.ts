/**
 * Charts over time for the network report, rendered to SVG by Vega-Lite in
 * node (no browser, no native dependencies). Phases are shaded bands; events
 * (kill -9, relay back, partition drops) are vertical rules.
 */
import * as vega from 'vega'
import { compile, type TopLevelSpec } from 'vega-lite'

export interface Series {
  t: number
  value: number
  series: string
}

export interface Marker {
  t: number
  label: string
}

export interface Band {
  from: number
  to: number
  phase: string
}

export interface ChartSpec {
  title: string
  yTitle: string
  data: Series[]
  bands?: Band[]
  markers?: Marker[]
  logY?: boolean
  xTitle?: string
  point?: boolean
}

export async function renderChart(c: ChartSpec): Promise<string> {
  const layers: Record<string, unknown>[] = []
  if (c.bands?.length) {
    layers.push({
      data: { values: c.bands },
      mark: { type: 'rect', opacity: 0.12 },
      encoding: {
        x: { field: 'from', type: 'quantitative' },
        x2: { field: 'to' },
        color: { field: 'phase', type: 'nominal', legend: { title: 'phase', orient: 'bottom' }, scale: { scheme: 'tableau10' } },
      },
    })
  }
  layers.push({
    data: { values: c.data },
    mark: { type: c.point ? 'point' : 'line', ...(c.point ? { filled: true, size: 12 } : { strokeWidth: 1.5 }) },
    encoding: {
      x: { field: 't', type: 'quantitative', title: c.xTitle ?? 'minutes since start' },
      y: { field: 'value', type: 'quantitative', title: c.yTitle, ...(c.logY ? { scale: { type: 'log' } } : {}) },
      stroke: { field: 'series', type: 'nominal', legend: { title: null, orient: 'top' } },
      ...(c.point ? { fill: { field: 'series', type: 'nominal', legend: null } } : {}),
    },
  })
  if (c.markers?.length) {
    layers.push({
      data: { values: c.markers },
      mark: { type: 'rule', strokeDash: [4, 3], color: '#444' },
      encoding: { x: { field: 't', type: 'quantitative' }, tooltip: { field: 'label' } },
    })
    layers.push({
      data: { values: c.markers },
      mark: { type: 'text', angle: 270, align: 'left', dx: 4, dy: -4, fontSize: 9, color: '#444' },
      encoding: { x: { field: 't', type: 'quantitative' }, y: { value: 4 }, text: { field: 'label' } },
    })
  }
  const spec = {
    $schema: 'https://vega.github.io/schema/vega-lite/v5.json',
    title: c.title,
    width: 760,
    height: 220,
    layer: layers,
    resolve: { scale: { color: 'independent', stroke: 'independent' } },
    config: { font: 'sans-serif', background: 'white' },
  } as unknown as TopLevelSpec
  const view = new vega.View(vega.parse(compile(spec).spec), { renderer: 'none' })
  const svg = await view.toSVG()
  view.finalize()
  return svg
}
