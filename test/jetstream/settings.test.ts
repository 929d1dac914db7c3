/** Jetstream's settings: RELAY_JETSTREAM=false leaves the routes out; bad values stop start-up naming the variable. */
import { afterAll, describe, expect, it } from 'vitest'
import { ConfigError, loadConfig } from '../../src/config.js'
import { createPostgresDatabase } from '../helpers/db.js'
import { LoopbackPlc } from '../helpers/loopback-plc.js'
import { apiUrl, startTestRelay } from '../helpers/relay.js'
import { refusedUpgrade } from './helpers.js'

const cleanups: (() => Promise<unknown>)[] = []
afterAll(async () => {
  for (const fn of cleanups.reverse()) await fn().catch(() => undefined)
})

describe('Jetstream settings', () => {
  it('defaults to on, with its limits', () => {
    const c = loadConfig({})
    expect(c.jetstream).toBe(true)
    expect(c.jetstreamMaxLag).toBe(500_000)
    expect(c.jetstreamRingSize).toBe(20_000)
  })

  it('refuses bad values naming the variable', () => {
    for (const [env, value] of [['RELAY_JETSTREAM', 'maybe'], ['RELAY_JETSTREAM_MAX_LAG', '0'], ['RELAY_JETSTREAM_RING_SIZE', 'lots']] as const) {
      expect(() => loadConfig({ [env]: value }), env).toThrow(ConfigError)
      expect(() => loadConfig({ [env]: value }), env).toThrow(new RegExp(`^${env}: `))
    }
  })

  it('RELAY_JETSTREAM=false serves neither wire', async () => {
    const db = await createPostgresDatabase()
    cleanups.push(() => db.drop())
    const plc = await LoopbackPlc.start()
    cleanups.push(() => plc.close())
    const relay = await startTestRelay({ databaseUrl: db.url, plcUrl: plc.url, env: { RELAY_JETSTREAM: 'false' } })
    cleanups.push(() => relay.stop())
    expect(relay.jetstream).toBeUndefined()
    const port = relay.apiAddress.port
    expect((await refusedUpgrade(`ws://127.0.0.1:${port}/subscribe`)).status).toBe(404)
    expect((await refusedUpgrade(`ws://127.0.0.1:${port}/xrpc/network.bsky.jetstream.subscribeEvents`)).status).toBe(404)
    expect((await fetch(apiUrl(relay, '/xrpc/network.bsky.jetstream.getZstdDictionary'))).status).toBe(501)
    expect(relay.xrpcMethods.some((m) => m.startsWith('network.bsky.jetstream'))).toBe(false)
  }, 60_000)
})
