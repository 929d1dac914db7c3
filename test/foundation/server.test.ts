import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import type { Relay } from '../../src/relay.js'
import { createPostgresDatabase } from '../helpers/db.js'
import { startTestRelay } from '../helpers/relay.js'
import { spawnRelay } from '../helpers/child.js'

const base = (relay: Relay) => `http://127.0.0.1:${relay.apiAddress.port}`

describe('relay server on Postgres', () => {
  let relay: Relay | undefined
  let drop: (() => Promise<void>) | undefined

  afterAll(async () => {
    await relay?.stop()
    await drop?.()
  })

  it('serves health, errors, metrics, then reports 503 when the database is gone', async () => {
    const db = await createPostgresDatabase()
    drop = db.drop
    relay = await startTestRelay({
      databaseUrl: db.url,
      plcUrl: 'http://127.0.0.1:1',
      // The production pool sizes' shape (small ingest pool, default query pool) and a generated admin password.
      env: { RELAY_DB_POOL_SIZE: '2', RELAY_DB_QUERY_POOL_SIZE: '10', RELAY_ADMIN_PASSWORD: '' },
    })

    const health = await fetch(`${base(relay)}/xrpc/_health`)
    expect(health.status).toBe(200)
    expect(health.headers.get('server')).toContain('atproto-relay')
    expect(health.headers.get('access-control-allow-origin')).toBe('*')
    // The batch commits' writer thread (RELAY_DB_WRITER=thread, the default) is up.
    expect(await health.json()).toMatchObject({ status: 'ok', version: expect.any(String), dbWriter: { state: 'up', statements: { thread: expect.any(Number), inline: expect.any(Number) } } })

    const root = await fetch(`${base(relay)}/`)
    expect(await root.text()).toContain('atrelay')

    const unknown = await fetch(`${base(relay)}/xrpc/com.example.nothing`)
    expect(unknown.status).toBe(501)
    expect(await unknown.json()).toEqual({ error: 'MethodNotImplemented', message: expect.stringContaining('com.example.nothing') })

    const notFound = await fetch(`${base(relay)}/nowhere`)
    expect(notFound.status).toBe(404)
    expect(await notFound.json()).toMatchObject({ error: expect.any(String), message: expect.any(String) })

    const metrics = await fetch(`http://127.0.0.1:${relay.metricsAddress.port}/metrics`)
    expect(metrics.status).toBe(200)
    expect(await metrics.text()).toContain('process_cpu_user_seconds_total')

    // Take the database away: health must say so rather than hang or crash.
    await db.drop()
    drop = undefined
    const down = await fetch(`${base(relay)}/xrpc/_health`)
    expect(down.status).toBe(503)
    expect(await down.json()).toMatchObject({ status: 'error', version: expect.any(String) })
  })
})

// Child processes start slowly on a busy 2-core machine: generous time limits (these are not timing assertions).
describe('atrelay serve as a process (embedded PGlite)', { timeout: 120_000 }, () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'atrelay-serve-'))
  afterAll(() => rmSync(dataDir, { recursive: true, force: true }))

  it('starts on ephemeral ports, answers _health, and exits 0 on SIGTERM', async () => {
    const child = spawnRelay(['serve'], {
      RELAY_DATA_DIR: dataDir,
      RELAY_API_LISTEN: '127.0.0.1:0',
      RELAY_METRICS_LISTEN: '127.0.0.1:0',
    })
    try {
      const listening = await child.waitFor((l) => l.msg === 'relay listening', 110_000)
      const port = (listening.api as { port: number }).port
      const health = await fetch(`http://127.0.0.1:${port}/xrpc/_health`)
      expect(health.status).toBe(200)
      const body = (await health.json()) as Record<string, unknown>
      expect(body).toMatchObject({ status: 'ok' })
      expect(body.dbWriter).toBeUndefined() // PGlite: one in-process connection, no writer thread
      child.proc.kill('SIGTERM')
      expect(await child.exited).toEqual({ code: 0, signal: null })
      expect(child.lines.some((l) => l.msg === 'relay stopped')).toBe(true)
    } finally {
      child.proc.kill('SIGKILL')
    }
  })

  it('refuses bad configuration with one line naming the variable', async () => {
    const child = spawnRelay(['serve'], { RELAY_API_LISTEN: 'abc', RELAY_DATA_DIR: dataDir })
    expect((await child.exited).code).toBe(1)
    expect(child.stderr).toHaveLength(1)
    expect(child.stderr[0]).toMatch(/^atrelay: RELAY_API_LISTEN: /)
  })

  it('migrates with `atrelay migrate`, twice', async () => {
    const first = spawnRelay(['migrate'], { RELAY_DATA_DIR: join(dataDir, 'm') })
    expect((await first.exited).code).toBe(0)
    const second = spawnRelay(['migrate'], { RELAY_DATA_DIR: join(dataDir, 'm') })
    expect((await second.exited).code).toBe(0)
    expect(second.lines.map((l) => l.text).join('\n')).toContain('up to date')
  })
})
