/**
 * RELAY_ADMIN_PASSWORD unset: the generated password is saved in RELAY_DATA_DIR
 * (0600) and a restarted relay accepts the same one; the CLI finds it there.
 */
import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ADMIN_PASSWORD_FILE, readAdminPasswordFile, resolveAdminPassword } from '../../src/admin-password.js'
import type { Relay } from '../../src/relay.js'
import { spawnRelay } from '../helpers/child.js'
import { createPostgresDatabase } from '../helpers/db.js'
import { apiUrl, basic, stopRelay } from './harness.js'
import { startTestRelay } from '../helpers/relay.js'

let dir: string
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'atrelay-password-'))
})
afterAll(() => rmSync(dir, { recursive: true, force: true }))

describe('resolveAdminPassword', () => {
  it('generates once into a 0600 file, then reads it back', () => {
    const dataDir = join(dir, 'unit', 'data') // created if missing
    const first = resolveAdminPassword({ adminPassword: undefined, dataDir })
    expect(first.source).toEqual({ kind: 'generated', path: join(dataDir, ADMIN_PASSWORD_FILE) })
    expect(first.password.length).toBeGreaterThanOrEqual(20)
    expect(statSync(join(dataDir, ADMIN_PASSWORD_FILE)).mode & 0o777).toBe(0o600)

    const second = resolveAdminPassword({ adminPassword: undefined, dataDir })
    expect(second).toEqual({ password: first.password, source: { kind: 'file', path: join(dataDir, ADMIN_PASSWORD_FILE), othersCanRead: false } })
    expect(readAdminPasswordFile(dataDir)).toBe(first.password)
  })

  it('RELAY_ADMIN_PASSWORD wins and writes nothing; memory:// keeps nothing', () => {
    const dataDir = join(dir, 'env')
    expect(resolveAdminPassword({ adminPassword: 'chosen', dataDir })).toEqual({ password: 'chosen', source: { kind: 'env' } })
    expect(readAdminPasswordFile(dataDir)).toBeUndefined()
    expect(resolveAdminPassword({ adminPassword: undefined, dataDir: 'memory://' }).source).toEqual({ kind: 'generated', path: undefined })
  })

  it('an empty file left behind is replaced with a new 0600 one; a readable one is reported', () => {
    const dataDir = join(dir, 'empty')
    resolveAdminPassword({ adminPassword: undefined, dataDir })
    const path = join(dataDir, ADMIN_PASSWORD_FILE)
    writeFileSync(path, '\n')
    chmodSync(path, 0o644)
    const fresh = resolveAdminPassword({ adminPassword: undefined, dataDir })
    expect(fresh.source.kind).toBe('generated')
    expect(readFileSync(path, 'utf8').trim()).toBe(fresh.password)
    expect(statSync(path).mode & 0o777).toBe(0o600)

    writeFileSync(path, 'shared-secret\n')
    chmodSync(path, 0o644)
    expect(resolveAdminPassword({ adminPassword: undefined, dataDir }).source).toMatchObject({ kind: 'file', othersCanRead: true })
  })
})

describe('a relay restarted without RELAY_ADMIN_PASSWORD', () => {
  let relay: Relay | undefined
  let drop: (() => Promise<void>) | undefined
  afterAll(async () => {
    await stopRelay(relay)
    await drop?.()
  })

  it('keeps accepting the password of its first start, and the CLI finds it', async () => {
    const db = await createPostgresDatabase()
    drop = db.drop
    const dataDir = join(dir, 'relay')
    const env = { RELAY_ADMIN_PASSWORD: '', RELAY_DATA_DIR: dataDir }
    const status = async (r: Relay, password: string) =>
      (await fetch(`${apiUrl(r)}/admin/api/hosts`, { headers: { authorization: basic(password) } })).status

    relay = await startTestRelay({ databaseUrl: db.url, plcUrl: 'http://127.0.0.1:1', env })
    const first = relay.adminPassword
    expect(readAdminPasswordFile(dataDir)).toBe(first)
    expect(await status(relay, first)).toBe(200)
    await stopRelay(relay)

    relay = await startTestRelay({ databaseUrl: db.url, plcUrl: 'http://127.0.0.1:1', env })
    expect(relay.adminPassword).toBe(first)
    expect(await status(relay, first)).toBe(200)
    expect(await status(relay, 'wrong')).toBe(401)

    // The CLI, as an operator runs it on the relay's machine: no password given, same data dir.
    const cli = spawnRelay(['hosts', 'list', '--json'], { RELAY_ADMIN_PASSWORD: '', RELAY_DATA_DIR: dataDir, RELAY_ADMIN_URL: apiUrl(relay) })
    expect({ ...(await cli.exited), stderr: cli.stderr }).toEqual({ code: 0, signal: null, stderr: [] })
    expect(cli.lines).toEqual([[]]) // one line of JSON: no hosts yet
  }, 60_000)
})
