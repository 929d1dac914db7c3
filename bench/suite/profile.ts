/**
 * A CPU profile of this process (the relay's main thread) through the
 * `inspector` module, summarised as self time per function and per area.
 */
import { mkdirSync, writeFileSync } from 'node:fs'
import { Session } from 'node:inspector'
import { dirname } from 'node:path'

interface CallFrame {
  functionName: string
  url: string
  lineNumber: number
}
interface ProfileNode {
  id: number
  callFrame: CallFrame
  hitCount?: number
  children?: number[]
}
interface CpuProfile {
  nodes: ProfileNode[]
  startTime: number
  endTime: number
  samples?: number[]
  timeDeltas?: number[]
}

export interface SelfTimeRow {
  name: string
  where: string
  ms: number
  share: number
}

export interface ProfileSummary {
  seconds: number
  samples: number
  /** Share of busy (non-idle) samples whose stack is in each stage of the relay, first match in this order. */
  stages: { stage: string; share: number }[]
  busyShare: number
  top: SelfTimeRow[]
  areas: { area: string; ms: number; share: number }[]
  file: string
}

function post<T>(session: Session, method: string, params?: object): Promise<T> {
  return new Promise((resolve, reject) => session.post(method, params ?? {}, (err, res) => (err ? reject(err) : resolve(res as T))))
}

export class CpuProfiler {
  private readonly session = new Session()

  async start(samplingIntervalUs = 500): Promise<void> {
    this.session.connect()
    await post(this.session, 'Profiler.enable')
    await post(this.session, 'Profiler.setSamplingInterval', { interval: samplingIntervalUs })
    await post(this.session, 'Profiler.start')
  }

  /** Stops, writes the raw `.cpuprofile` (open it in Chrome DevTools) and returns the summary. */
  async stop(file: string, topN = 25): Promise<ProfileSummary> {
    const { profile } = await post<{ profile: CpuProfile }>(this.session, 'Profiler.stop')
    await post(this.session, 'Profiler.disable')
    this.session.disconnect()
    mkdirSync(dirname(file), { recursive: true })
    writeFileSync(file, JSON.stringify(profile))
    return summarise(profile, file, topN)
  }
}

/** Which part of the system a frame belongs to. */
function areaOf(cf: CallFrame): string {
  const u = cf.url
  if (!u) {
    if (cf.functionName === '(garbage collector)') return 'GC'
    if (cf.functionName === '(idle)') return 'idle'
    if (cf.functionName === '(program)') return 'V8/native (program)'
    return 'native/builtins'
  }
  const src = /\/src\/([a-z-]+)\//.exec(u)
  if (src && !u.includes('node_modules')) return `src/${src[1]}`
  if (/\/src\/[a-z-]+\.ts/.test(u) && !u.includes('node_modules')) return 'src (root)'
  const mod = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(u)
  if (mod) return mod[1]!
  if (u.startsWith('node:')) return `node:${u.slice(5).split('/')[0]}`
  if (u.includes('/bench/')) return 'bench harness'
  return 'other'
}

/** Stages of the relay's ingest path, tested in order against every frame of a sample's stack. */
const STAGES: [string, (cf: CallFrame) => boolean][] = [
  ['verification (verifyCommitEvent / verifySyncEvent)', (cf) => cf.functionName === 'runVerification' || cf.functionName === 'verifyBody'],
  ['identity (DID resolution, handle checks)', (cf) => cf.url.includes('/src/identity/')],
  ['database client (kysely, pg; every caller)', (cf) => /node_modules\/(kysely|pg|pg-protocol|pg-pool)\//.test(cf.url)],
  ['upstream receive (crawler: ws frames, decodeFrame)', (cf) => cf.url.includes('/src/crawler/')],
  ['sequencer (seq splice, batching)', (cf) => cf.url.includes('/src/sequencer/')],
  ['firehose (fan-out)', (cf) => cf.url.includes('/src/firehose/')],
  ['metrics (prom-client)', (cf) => cf.url.includes('prom-client')],
  ['garbage collector', (cf) => cf.functionName === '(garbage collector)'],
]

function stageShares(profile: CpuProfile): { stages: { stage: string; share: number }[]; busy: number } {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]))
  const parent = new Map<number, number>()
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id)
  const counts = new Map<string, number>(STAGES.map(([s]) => [s, 0]))
  let busy = 0
  let other = 0
  for (const leaf of profile.samples ?? []) {
    if (byId.get(leaf)?.callFrame.functionName === '(idle)') continue
    busy++
    const stack: CallFrame[] = []
    for (let id: number | undefined = leaf; id !== undefined; id = parent.get(id)) stack.push(byId.get(id)!.callFrame)
    const hit = STAGES.find(([, test]) => stack.some(test))
    if (hit) counts.set(hit[0], counts.get(hit[0])! + 1)
    else other++
  }
  const stages = [...counts].map(([stage, n]) => ({ stage, share: busy ? n / busy : 0 }))
  stages.push({ stage: 'everything else (scheduling, promises, ingest glue, Node internals)', share: busy ? other / busy : 0 })
  return { stages, busy }
}

export function summarise(profile: CpuProfile, file: string, topN: number): ProfileSummary {
  const samples = profile.samples?.length ?? 0
  const seconds = (profile.endTime - profile.startTime) / 1e6
  const msPerSample = samples > 0 ? (seconds * 1000) / samples : 0
  const byFn = new Map<string, { name: string; where: string; hits: number }>()
  const byArea = new Map<string, number>()
  let busyHits = 0
  for (const n of profile.nodes) {
    const hits = n.hitCount ?? 0
    if (hits === 0) continue
    const cf = n.callFrame
    const area = areaOf(cf)
    byArea.set(area, (byArea.get(area) ?? 0) + hits)
    if (area === 'idle') continue
    busyHits += hits
    const short = cf.url.replace(/^file:\/\//, '').replace(/^.*?\/(src|bench|test|node_modules)\//, '$1/')
    const where = cf.url ? `${short}:${cf.lineNumber + 1}` : ''
    const key = `${cf.functionName}@${where}`
    const e = byFn.get(key) ?? { name: cf.functionName || '(anonymous)', where, hits: 0 }
    e.hits += hits
    byFn.set(key, e)
  }
  const top = [...byFn.values()]
    .sort((a, b) => b.hits - a.hits)
    .slice(0, topN)
    .map((e) => ({ name: e.name, where: e.where, ms: e.hits * msPerSample, share: busyHits ? e.hits / busyHits : 0 }))
  const areas = [...byArea.entries()]
    .filter(([area]) => area !== 'idle')
    .sort((a, b) => b[1] - a[1])
    .map(([area, hits]) => ({ area, ms: hits * msPerSample, share: busyHits ? hits / busyHits : 0 }))
  const idle = byArea.get('idle') ?? 0
  areas.push({ area: 'idle (event loop waiting)', ms: idle * msPerSample, share: NaN })
  const st = stageShares(profile)
  return { seconds, samples, stages: st.stages, busyShare: samples ? st.busy / samples : 0, top, areas, file }
}
