/** What the numbers were measured on, and how busy the machine was. */
import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { cpus, loadavg, totalmem, release } from 'node:os'
import pg from 'pg'
import { threadCpuSeconds } from '../../src/thread-cpu.js'

export interface MachineInfo {
  cpuModel: string
  cores: number
  ramGiB: number
  node: string
  kernel: string
  postgres: string
  secp256k1: string
}

export async function describeMachine(adminUrl: string, needPostgres = true): Promise<MachineInfo> {
  let postgres = 'unknown'
  const client = new pg.Client({ connectionString: adminUrl, connectionTimeoutMillis: 5_000 })
  try {
    await client.connect()
    const r = await client.query<{ server_version: string }>('show server_version')
    postgres = `PostgreSQL ${r.rows[0]?.server_version ?? '?'}`
  } catch (err) {
    if (needPostgres) throw err
    postgres = 'not reachable (no phase of this run needs it)'
  } finally {
    await client.end().catch(() => undefined)
  }
  const list = cpus()
  return {
    cpuModel: list[0]?.model ?? 'unknown',
    cores: list.length,
    ramGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    node: process.version,
    kernel: release(),
    postgres,
    secp256k1: 'native (libsecp256k1 binding)',
  }
}

export function loadAverage(): [number, number, number] {
  const [a, b, c] = loadavg()
  return [round2(a ?? 0), round2(b ?? 0), round2(c ?? 0)]
}

function round2(x: number): number {
  return Math.round(x * 100) / 100
}

/** Machine-wide CPU time (all cores, /proc/stat jiffies → seconds): busy and total. */
export function machineCpu(): { busy: number; total: number } {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? ''
    const f = line.trim().split(/\s+/).slice(1).map(Number)
    const idle = (f[3] ?? 0) + (f[4] ?? 0)
    const total = f.reduce((s, x) => s + x, 0)
    return { busy: (total - idle) / CLK_TCK, total: total / CLK_TCK }
  } catch {
    return { busy: NaN, total: NaN }
  }
}

/** This process's CPU seconds (user + system). */
export function processCpu(): number {
  const u = process.cpuUsage()
  return (u.user + u.system) / 1e6
}

/** Clock ticks per second of /proc's utime/stime (`getconf CLK_TCK`; 100 on Linux unless configured otherwise). */
export const CLK_TCK = (() => {
  try {
    const n = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim())
    return Number.isFinite(n) && n > 0 ? n : 100
  } catch {
    return 100
  }
})()

/** CPU seconds of this process's main thread (the event loop; its tid is the pid) alone, from /proc; NaN off Linux. */
export function mainThreadCpu(): number {
  return threadCpuSeconds(process.pid) ?? NaN
}

/** Milliseconds the event loop has been active (not waiting in the poll phase) since the process started. */
export function eventLoopActiveMs(): number {
  return performance.eventLoopUtilization().active
}

/** One reading of everything a window's CPU figures are computed from. */
export function cpuReading(): { cpu: number; mainCpu: number; eluActiveMs: number; machineBusy: number } {
  return { cpu: processCpu(), mainCpu: mainThreadCpu(), eluActiveMs: eventLoopActiveMs(), machineBusy: machineCpu().busy }
}
