/**
 * The relay under attack as its own process (`node dist/src/cli.js serve`, as
 * deployed; build first), so its RSS and CPU are its own. A fresh Postgres
 * database per run; loopback only: hosts are `localhost:<port>`, the PLC is the
 * bench's static one, and `.test` handles are never looked up by the relay.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { openSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import pg from 'pg'
import { createPostgresDatabase } from '../../test/helpers/db.js'
import { freePort } from '../../test/helpers/ports.js'

export const ADMIN_PASSWORD = 'bench-attacks'


export class RelayProcess {
  private constructor(
    private readonly child: ChildProcess,
    readonly databaseUrl: string,
    private readonly dropDb: () => Promise<void>,
    readonly apiPort: number,
    readonly metricsPort: number,
  ) {}

  get pid(): number {
    return this.child.pid!
  }
  get url(): string {
    return `http://127.0.0.1:${this.apiPort}`
  }
  get firehoseUrl(): string {
    return `ws://127.0.0.1:${this.apiPort}/xrpc/com.atproto.sync.subscribeRepos`
  }

  /** Starts the relay and waits until `/xrpc/_health` answers 200. Logs (info and up) go to `logFile`. */
  static async start(opts: { root: string; plcUrl: string; logFile: string }): Promise<RelayProcess> {
    const db = await createPostgresDatabase()
    const [apiPort, metricsPort] = [await freePort(), await freePort()]
    const log = openSync(opts.logFile, 'w')
    const child = spawn(process.execPath, [join(opts.root, 'dist/src/cli.js'), 'serve'], {
      cwd: opts.root,
      stdio: ['ignore', log, log],
      env: {
        PATH: process.env.PATH ?? '',
        DATABASE_URL: db.url,
        RELAY_API_LISTEN: `127.0.0.1:${apiPort}`,
        RELAY_METRICS_LISTEN: `127.0.0.1:${metricsPort}`,
        RELAY_ALLOW_INSECURE_HOSTS: 'true',
        RELAY_PLC_URL: opts.plcUrl,
        RELAY_ADMIN_PASSWORD: ADMIN_PASSWORD,
        // As startBenchRelay: fake hosts are untrusted localhost:<port>; lift the test-rig limits.
        RELAY_DEFAULT_ACCOUNT_LIMIT: '1000000000',
        RELAY_NEW_HOSTS_PER_DAY: '10000',
        RELAY_PLC_RATE_LIMIT: '1000000',
        LOG_LEVEL: 'info',
        // ATTACK_LIMIT_LOOPBACK=1: loopback clients are limited like remote ones, so the burst
        // (from 127.0.0.2) meets the per-client limits as one abusive remote client would.
        ...(process.env.ATTACK_LIMIT_LOOPBACK === '1' ? { RELAY_LIMIT_LOOPBACK: 'true' } : {}),
      },
    })
    const relay = new RelayProcess(child, db.url, db.drop, apiPort, metricsPort)
    const deadline = performance.now() + 90_000
    for (;;) {
      if (child.exitCode !== null) {
        await db.drop()
        throw new Error(`relay exited with code ${child.exitCode} before it was healthy; see ${opts.logFile}`)
      }
      try {
        const res = await fetch(`${relay.url}/xrpc/_health`, { signal: AbortSignal.timeout(2000) })
        await res.arrayBuffer()
        if (res.ok) return relay
      } catch {
        // not listening yet
      }
      if (performance.now() > deadline) {
        await relay.stop()
        throw new Error(`relay not healthy after 90 s; see ${opts.logFile}`)
      }
      await sleep(200)
    }
  }

  get alive(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null
  }

  /** VmRSS in MB (NaN once the process is gone). */
  rssMB(): number {
    try {
      const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${this.pid}/status`, 'utf8'))
      return m ? Math.round(Number(m[1]) / 102.4) / 10 : NaN
    } catch {
      return NaN
    }
  }

  /** Admin API call (Basic auth, JSON); retries on 429 so a per-client limit cannot refuse the bench's own setup. */
  async admin<T>(method: 'GET' | 'POST', path: string, body?: unknown, timeoutMs = 30_000): Promise<T> {
    const deadline = performance.now() + timeoutMs
    for (;;) {
      const res = await fetch(`${this.url}/admin/api/${path}`, {
        method,
        headers: {
          authorization: 'Basic ' + Buffer.from(`admin:${ADMIN_PASSWORD}`).toString('base64'),
          ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
        signal: AbortSignal.timeout(timeoutMs),
      })
      const text = await res.text()
      if (res.status === 429 && performance.now() < deadline) {
        await sleep(Math.min(5000, 1000 * Number(res.headers.get('retry-after') ?? 1)))
        continue
      }
      if (!res.ok) throw new Error(`admin ${method} ${path}: HTTP ${res.status} ${text.slice(0, 300)}`)
      return JSON.parse(text) as T
    }
  }

  /** Admits a host through the admin API; a timed-out attempt is retried (admission is idempotent). */
  async addHost(hostname: string, log: (m: string) => void = () => {}): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      const t0 = performance.now()
      try {
        await this.admin('POST', 'hosts', { hostname })
        const ms = performance.now() - t0
        if (ms > 5000) log(`   admitting ${hostname} took ${Math.round(ms)} ms`)
        return
      } catch (err) {
        if ((err as Error).name !== 'TimeoutError' || attempt === 3) throw err
        log(`   admitting ${hostname}: no answer in 30 s (attempt ${attempt}); retrying`)
      }
    }
  }

  /** Prometheus samples whose name matches `pattern`, non-zero only, summed over hosts (`name{other labels}` → value). */
  async metrics(pattern: RegExp): Promise<Record<string, number>> {
    const res = await fetch(`http://127.0.0.1:${this.metricsPort}/metrics`, { signal: AbortSignal.timeout(10_000) })
    const out: Record<string, number> = {}
    for (const line of (await res.text()).split('\n')) {
      if (line.startsWith('#') || !line.trim()) continue
      const at = line.lastIndexOf(' ')
      const name = line.slice(0, at).replace(/host="[^"]*",?/, '').replace(/,?\}$/, '}').replace('{}', '')
      const value = Number(line.slice(at + 1))
      if (pattern.test(name) && value !== 0) out[name] = (out[name] ?? 0) + value
    }
    return out
  }

  /** Seeds `count` accounts with heads straight into the database (as bench/suite/memory-child.ts does), under a banned host. */
  async seedAccounts(count: number): Promise<void> {
    const client = new pg.Client({ connectionString: this.databaseUrl })
    await client.connect()
    try {
      const host = await client.query<{ id: number }>(
        `insert into host (hostname, ssl, status, account_limit, account_count) values ('seeded.invalid', true, 'banned', 1000000000, $1) returning id`,
        [count],
      )
      await client.query(
        `with a as (
           insert into account (did, host_id, local_status, upstream_status)
           select 'did:plc:seed' || lpad(g::text, 16, '0'), $1, 'active', 'active' from generate_series(1, $2) g
           returning id)
         insert into account_head (account_id, rev, commit_cid, data_cid)
         select id, '3l' || translate(lpad(id::text, 11, '2'), '0189', 'abcd'), '\\x01711220'::bytea || sha256(id::text::bytea), '\\x01711220'::bytea || sha256(('d' || id)::bytea) from a`,
        [host.rows[0]!.id, count],
      )
    } finally {
      await client.end()
    }
  }

  /** SIGTERM, then SIGKILL after `graceMs`; drops the database. */
  async stop(graceMs = 20_000): Promise<void> {
    if (this.alive) {
      const exited = new Promise<void>((resolve) => this.child.once('exit', () => resolve()))
      this.child.kill('SIGTERM')
      const timer = setTimeout(() => this.child.kill('SIGKILL'), graceMs)
      await exited
      clearTimeout(timer)
    }
    await this.dropDb()
  }
}
