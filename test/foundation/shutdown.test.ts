/**
 * `atrelay serve` as a process whose stdout stops draining (a pipe nobody reads, as with
 * `npm start | tee log` after Ctrl-C) or is closed: the relay keeps answering, and SIGTERM
 * still ends it. With a synchronous log destination every write slept and retried in a
 * loop, so the process answered nothing and ignored the signal.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { createPostgresDatabase } from '../helpers/db.js'
import { CLI } from '../helpers/child.js'
import { waitUntil } from '../helpers/wait.js'
import { freePort } from '../helpers/ports.js'

let db: { url: string; drop: () => Promise<void> }

beforeAll(async () => {
  db = await createPostgresDatabase()
})

// Killed here too, so a test that times out leaves no relay behind.
const started: ChildProcess[] = []
afterEach(() => {
  for (const proc of started.splice(0)) if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL')
})

afterAll(async () => {
  await db?.drop()
})


/** Starts the relay with stdout a pipe this process never reads from. */
async function startUnread() {
  const port = await freePort()
  const proc = spawn(process.execPath, ['--import', 'tsx', CLI, 'serve'], {
    env: {
      ...process.env,
      LOG_LEVEL: 'info',
      DATABASE_URL: db.url,
      RELAY_API_LISTEN: `127.0.0.1:${port}`,
      RELAY_METRICS_LISTEN: '127.0.0.1:0',
      RELAY_ADMIN_PASSWORD: 'x',
      RELAY_ALLOW_INSECURE_HOSTS: 'true',
      // Every request of a batch is admitted at once (the default gate would shed some with 503, unlogged).
      RELAY_CRAWL_CONCURRENCY: '64',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  started.push(proc)
  // Nobody reads stdout: once the pipe and Node's small read-ahead are full, every write stalls.
  proc.stdout!.pause()
  const stderr: string[] = []
  proc.stderr!.setEncoding('utf8').on('data', (chunk: string) => stderr.push(chunk))
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    proc.on('exit', (code, signal) => resolve({ code, signal })),
  )
  const base = `http://127.0.0.1:${port}`
  await waitUntil(
    async () => (await fetch(`${base}/xrpc/_health`).catch(() => undefined))?.status === 200,
    () => `the relay to answer _health (stderr: ${stderr.join('')})`,
    110_000,
  )
  return { proc, base, exited, stderr }
}

/** Each refused requestCrawl (nothing listens on the port) writes one log line of ~250 bytes. */
async function makeLogLines(base: string, count: number): Promise<void> {
  for (let i = 0; i < count; i += 50) {
    const batch = Array.from({ length: 50 }, (_, j) =>
      fetch(`${base}/xrpc/com.atproto.sync.requestCrawl`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ hostname: `localhost:${10_000 + i + j}` }),
      }).then((res) => res.status),
    )
    // 502 UpstreamFailure: the probe was refused, and the refusal logged.
    for (const status of await Promise.all(batch)) expect(status).toBe(502)
  }
}

describe('atrelay serve with a stdout that does not drain', { timeout: 180_000 }, () => {
  it('keeps answering while stdout is stalled, and exits on SIGTERM', async () => {
    const relay = await startUnread()
    // ~500 KB of log lines: far more than a pipe and Node's read-ahead hold.
    await makeLogLines(relay.base, 2_000)
    expect((await fetch(`${relay.base}/xrpc/_health`)).status).toBe(200)
    relay.proc.kill('SIGTERM')
    expect(await relay.exited).toEqual({ code: 0, signal: null })
  })

  it('keeps answering and exits on SIGTERM when stdout is closed', async () => {
    const relay = await startUnread()
    relay.proc.stdout!.destroy()
    await makeLogLines(relay.base, 200)
    expect((await fetch(`${relay.base}/xrpc/_health`)).status).toBe(200)
    relay.proc.kill('SIGTERM')
    expect(await relay.exited).toEqual({ code: 0, signal: null })
  })
})
