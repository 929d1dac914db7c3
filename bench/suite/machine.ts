/** What the numbers were measured on, and how busy the machine was. */
import { readFileSync } from 'node:fs'
import { cpus, loadavg, totalmem, release } from 'node:os'
import pg from 'pg'

export interface MachineInfo {
  cpuModel: string
  cores: number
  ramGiB: number
  node: string
  kernel: string
  postgres: string
  secp256k1: string
}

export async function describeMachine(adminUrl: string): Promise<MachineInfo> {
  const client = new pg.Client({ connectionString: adminUrl, connectionTimeoutMillis: 5_000 })
  await client.connect()
  let postgres = 'unknown'
  try {
    const r = await client.query<{ server_version: string }>('show server_version')
    postgres = `PostgreSQL ${r.rows[0]?.server_version ?? '?'}`
  } finally {
    await client.end()
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
    return { busy: (total - idle) / 100, total: total / 100 }
  } catch {
    return { busy: NaN, total: NaN }
  }
}

/** This process's CPU seconds (user + system). */
export function processCpu(): number {
  const u = process.cpuUsage()
  return (u.user + u.system) / 1e6
}
