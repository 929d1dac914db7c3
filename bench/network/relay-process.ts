/**
 * The relay as an operator runs it: the compiled `node dist/src/cli.js serve`
 * in its own process, configured by environment, logs to a file, so it can be
 * killed with SIGKILL and started again on the same database. Also reads its
 * CPU and RSS from /proc and its Prometheus metrics over loopback.
 */
import { spawn, execFileSync, type ChildProcess } from 'node:child_process'
import { createWriteStream, readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'

const ROOT = fileURLToPath(new URL('../../', import.meta.url))
const CLI = `${ROOT}dist/src/cli.js`
const TICKS = 100

export function buildRelay(log: (m: string) => void): void {
  const t0 = performance.now()
  execFileSync(process.execPath, [`${ROOT}node_modules/typescript/bin/tsc`, '-p', `${ROOT}tsconfig.build.json`], { stdio: 'inherit' })
  log(`built dist/ in ${((performance.now() - t0) / 1000).toFixed(1)} s`)
}

export function migrateDatabase(databaseUrl: string): void {
  execFileSync(process.execPath, [CLI, 'migrate'], { env: { ...process.env, DATABASE_URL: databaseUrl, LOG_LEVEL: 'warn' }, stdio: ['ignore', 'ignore', 'inherit'] })
}

export interface ProcSample {
  cpuSeconds: number
  rssBytes: number
}

/** CPU seconds (user + system, all threads) and RSS of a live pid, from /proc; null when gone. */
export function readProc(pid: number): ProcSample | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    const statm = readFileSync(`/proc/${pid}/statm`, 'utf8').split(' ')
    return { cpuSeconds: (Number(f[11]) + Number(f[12])) / TICKS, rssBytes: Number(statm[1]) * 4096 }
  } catch {
    return null
  }
}

export class RelayProcess {
  private child: ChildProcess | null = null
  /** CPU of earlier incarnations (a restart starts /proc counters from zero). */
  private cpuBefore = 0
  private lastCpu = 0
  starts = 0

  constructor(
    private readonly env: Record<string, string>,
    readonly apiPort: number,
    readonly metricsPort: number,
    private readonly logFile: string,
  ) {}

  get pid(): number | undefined {
    return this.child?.pid
  }
  get apiUrl(): string {
    return `http://127.0.0.1:${this.apiPort}`
  }
  get firehoseUrl(): string {
    return `ws://127.0.0.1:${this.apiPort}/xrpc/com.atproto.sync.subscribeRepos`
  }

  /** Starts the relay; resolves once its API answers (the time from spawn is returned, ms). */
  async start(deadlineMs = 600_000): Promise<number> {
    const t0 = performance.now()
    const out = createWriteStream(this.logFile, { flags: 'a' })
    const child = spawn(process.execPath, [CLI, 'serve'], {
      env: { ...process.env, ...this.env, RELAY_API_LISTEN: `127.0.0.1:${this.apiPort}`, RELAY_METRICS_LISTEN: `127.0.0.1:${this.metricsPort}` },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    child.stdout!.pipe(out)
    child.stderr!.pipe(out)
    this.child = child
    this.starts++
    this.lastCpu = 0
    let exited = false
    child.once('exit', () => (exited = true))
    while (performance.now() - t0 < deadlineMs) {
      if (exited) throw new Error(`relay exited during start-up; see ${this.logFile}`)
      try {
        const res = await fetch(`${this.apiUrl}/xrpc/_health`, { signal: AbortSignal.timeout(2000) })
        if (res.status === 200) return performance.now() - t0
      } catch {
        // not listening yet
      }
      await new Promise((r) => setTimeout(r, 100))
    }
    throw new Error(`relay did not answer /xrpc/_health within ${deadlineMs} ms`)
  }

  /** SIGKILL (no shutdown work at all) or SIGTERM (graceful); resolves when it has exited. */
  async stop(signal: 'SIGKILL' | 'SIGTERM'): Promise<void> {
    const child = this.child
    if (!child || child.exitCode !== null) return
    this.sample()
    const done = new Promise<void>((resolve) => child.once('exit', () => resolve()))
    child.kill(signal)
    const timer = setTimeout(() => child.kill('SIGKILL'), 20_000)
    await done
    clearTimeout(timer)
    this.cpuBefore += this.lastCpu
    this.lastCpu = 0
    this.child = null
  }

  /** Total relay CPU seconds over every incarnation, and the current RSS (0 while down). */
  sample(): { cpuSeconds: number; rssBytes: number; up: boolean } {
    const pid = this.child?.pid
    const p = pid !== undefined ? readProc(pid) : null
    if (p) this.lastCpu = p.cpuSeconds
    return { cpuSeconds: this.cpuBefore + this.lastCpu, rssBytes: p?.rssBytes ?? 0, up: p !== null }
  }

  /** The relay's Prometheus metrics as name{labels} → value (empty while down). */
  async metrics(): Promise<Map<string, number>> {
    const out = new Map<string, number>()
    try {
      const text = await (await fetch(`http://127.0.0.1:${this.metricsPort}/metrics`, { signal: AbortSignal.timeout(5000) })).text()
      for (const line of text.split('\n')) {
        if (!line || line.startsWith('#')) continue
        const i = line.lastIndexOf(' ')
        out.set(line.slice(0, i), Number(line.slice(i + 1)))
      }
    } catch {
      // down
    }
    return out
  }
}

/** Sum of every series of a metric (all labels). */
export function metricSum(m: Map<string, number>, name: string): number {
  let n = 0
  for (const [k, v] of m) if (k === name || k.startsWith(name + '{')) n += v
  return n
}
