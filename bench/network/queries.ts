/**
 * The query API at scale, while ingest runs: a full listRepos walk (time per
 * page against cursor depth), getHostStatus of the largest host, and
 * getRepoStatus / getLatestCommit for random seeded accounts (p50/p99).
 */
import { seededDid } from './params.js'

export interface ListReposWalk {
  /** False when the walk ran out of its time budget: the rest of the depths were sampled by cursor jumps. */
  complete: boolean
  budgetS: number
  /** Pages fetched by jumping the cursor (account id) past where the walk stopped. */
  sampledPages: number
  pages: number
  repos: number
  seconds: number
  firstPageMs: number
  /** Per tenth of the walk: depth (accounts before), median and max page time. */
  deciles: { depth: number; medianMs: number; maxMs: number }[]
  p50Ms: number
  p99Ms: number
  maxMs: number
  /** Pages slower than 2 × the first page. */
  over2xFirst: number
  /** Sampled pages for the chart: depth, ms. */
  points: { depth: number; ms: number }[]
}

export interface Timed {
  count: number
  errors: number
  p50Ms: number
  p99Ms: number
  maxMs: number
}

export interface QueryResults {
  listRepos: ListReposWalk
  getHostStatus: Timed & { hostname: string; accountCount?: number }
  getRepoStatus: Timed
  getLatestCommit: Timed
}

const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b)
  return s.length ? s[Math.min(s.length - 1, Math.floor(p * s.length))]! : NaN
}

async function timedGet(url: string): Promise<{ ms: number; status: number; body: string }> {
  const t0 = performance.now()
  const res = await fetch(url, { redirect: 'manual', signal: AbortSignal.timeout(120_000) })
  const body = await res.text()
  return { ms: performance.now() - t0, status: res.status, body }
}

/**
 * Walks listRepos from the start until done or `budgetS` is spent; if the budget runs out, pages at 20
 * depths between there and `totalAccounts` are fetched by cursor (the cursor is an account id), so the
 * curve of page time against depth is complete either way.
 */
export async function walkListRepos(api: string, totalAccounts: number, budgetS: number, log: (m: string) => void): Promise<ListReposWalk> {
  const times: { depth: number; ms: number }[] = []
  let cursor: string | undefined
  let repos = 0
  const t0 = performance.now()
  let lastLog = t0
  let complete = true
  const page = async (c: string | undefined) => {
    const r = await timedGet(`${api}/xrpc/com.atproto.sync.listRepos?limit=1000${c ? `&cursor=${c}` : ''}`)
    if (r.status !== 200) throw new Error(`listRepos ${r.status}: ${r.body.slice(0, 200)}`)
    return { ms: r.ms, json: JSON.parse(r.body) as { cursor?: string; repos: unknown[] } }
  }
  for (;;) {
    const { ms, json } = await page(cursor)
    times.push({ depth: repos, ms })
    repos += json.repos.length
    if (!json.cursor || json.repos.length === 0) break
    cursor = json.cursor
    if (performance.now() - lastLog > 15_000) {
      lastLog = performance.now()
      log(`    listRepos: ${repos} repos, ${times.length} pages, last page ${ms.toFixed(0)} ms`)
    }
    if (performance.now() - t0 > budgetS * 1000) {
      complete = false
      break
    }
  }
  let sampledPages = 0
  if (!complete) {
    const from = Number(cursor)
    log(`    listRepos: budget of ${budgetS} s spent at depth ${repos}; sampling 20 depths up to ${totalAccounts}`)
    for (let k = 1; k <= 20; k++) {
      const at = Math.floor(from + ((totalAccounts - from) * k) / 21)
      const { ms } = await page(String(at))
      times.push({ depth: at, ms })
      sampledPages++
    }
  }
  const ms = times.map((x) => x.ms)
  const first = ms[0]!
  const maxDepth = Math.max(...times.map((x) => x.depth))
  const deciles = Array.from({ length: 10 }, (_, d) => {
    const lo = (d * maxDepth) / 10
    const hi = ((d + 1) * maxDepth) / 10
    const part = times.filter((x) => x.depth >= lo && (x.depth < hi || (d === 9 && x.depth <= hi)))
    return { depth: part[0]?.depth ?? 0, medianMs: pct(part.map((x) => x.ms), 0.5), maxMs: Math.max(...part.map((x) => x.ms)) }
  }).filter((d) => Number.isFinite(d.medianMs))
  const step = Math.max(1, Math.floor(times.length / 400))
  return {
    complete,
    budgetS,
    sampledPages,
    pages: times.length,
    repos,
    seconds: (performance.now() - t0) / 1000,
    firstPageMs: first,
    deciles,
    p50Ms: pct(ms, 0.5),
    p99Ms: pct(ms, 0.99),
    maxMs: Math.max(...ms),
    over2xFirst: ms.filter((x) => x > 2 * first).length,
    points: times.filter((_, i) => i % step === 0),
  }
}

async function timedMany(urls: string[]): Promise<Timed & { last?: string }> {
  const ms: number[] = []
  let errors = 0
  let last: string | undefined
  for (const u of urls) {
    const r = await timedGet(u)
    if (r.status >= 400) errors++
    ms.push(r.ms)
    last = r.body
  }
  return { count: ms.length, errors, p50Ms: pct(ms, 0.5), p99Ms: pct(ms, 0.99), maxMs: Math.max(...ms), last }
}

export async function runQueries(api: string, largestHost: string, seededAccounts: number, totalAccounts: number, budgetS: number, log: (m: string) => void): Promise<QueryResults> {
  const hs = await timedMany(Array.from({ length: 20 }, () => `${api}/xrpc/com.atproto.sync.getHostStatus?hostname=${encodeURIComponent(largestHost)}`))
  let accountCount: number | undefined
  try {
    accountCount = (JSON.parse(hs.last ?? '{}') as { accountCount?: number }).accountCount
  } catch {
    // reported as errors
  }
  log(`    getHostStatus ${largestHost}: p50 ${hs.p50Ms.toFixed(1)} ms, p99 ${hs.p99Ms.toFixed(1)} ms`)
  const dids = Array.from({ length: 500 }, () => seededDid(1 + Math.floor(Math.random() * seededAccounts)))
  const rs = await timedMany(dids.map((d) => `${api}/xrpc/com.atproto.sync.getRepoStatus?did=${d}`))
  const lc = await timedMany(dids.map((d) => `${api}/xrpc/com.atproto.sync.getLatestCommit?did=${d}`))
  log(`    getRepoStatus p99 ${rs.p99Ms.toFixed(1)} ms, getLatestCommit p99 ${lc.p99Ms.toFixed(1)} ms`)
  const listRepos = await walkListRepos(api, totalAccounts, budgetS, log)
  log(`    listRepos: ${listRepos.pages} pages in ${listRepos.seconds.toFixed(0)} s, first ${listRepos.firstPageMs.toFixed(1)} ms, max ${listRepos.maxMs.toFixed(1)} ms`)
  const strip = ({ last, ...t }: Timed & { last?: string }) => (void last, t)
  return {
    listRepos,
    getHostStatus: { ...strip(hs), hostname: largestHost, ...(accountCount !== undefined ? { accountCount } : {}) },
    getRepoStatus: strip(rs),
    getLatestCommit: strip(lc),
  }
}
