import { readFileSync } from 'node:fs'
import { availableParallelism } from 'node:os'
import { describe, expect, it } from 'vitest'
import { CONFIG_VARIABLES, ConfigError, loadConfig, parseDuration, parseListen } from '../../src/config.js'

describe('configuration', () => {
  it('has safe defaults for an empty environment', () => {
    const config = loadConfig({})
    expect(config.databaseUrl).toBeUndefined()
    expect(config.dataDir).toBe('./data')
    expect(config.apiListen).toEqual({ host: undefined, port: 2470 })
    expect(config.metricsListen).toEqual({ host: undefined, port: 2471 })
    expect(config.replayWindowMs).toBe(72 * 3_600_000)
    expect(config.maxFutureRevMs).toBe(5 * 60_000)
    expect(config.plcUrl).toBe('https://plc.directory')
    expect(config.allowInsecureHosts).toBe(false)
    expect(config.lenient).toBe(false)
    expect(config.futureCursor).toBe('reset')
    expect(config.trustedDomains).toEqual(['*.host.bsky.network'])
  })

  it('parses every kind of value', () => {
    const config = loadConfig({
      DATABASE_URL: 'postgres://postgres@127.0.0.1:5432/test',
      RELAY_API_LISTEN: '127.0.0.1:0',
      RELAY_METRICS_LISTEN: '[::1]:9090',
      RELAY_REPLAY_WINDOW: '2h',
      RELAY_ALLOW_INSECURE_HOSTS: 'true',
      RELAY_TRUSTED_DOMAINS: 'pds.example.com, *.Host.Example.NET',
      RELAY_DEFAULT_ACCOUNT_LIMIT: '1_000',
      RELAY_FUTURE_CURSOR: 'stop',
      LOG_LEVEL: 'debug',
    })
    expect(config.databaseUrl).toBe('postgres://postgres@127.0.0.1:5432/test')
    expect(config.apiListen).toEqual({ host: '127.0.0.1', port: 0 })
    expect(config.metricsListen).toEqual({ host: '::1', port: 9090 })
    expect(config.replayWindowMs).toBe(7_200_000)
    expect(config.allowInsecureHosts).toBe(true)
    expect(config.trustedDomains).toEqual(['pds.example.com', '*.host.example.net'])
    expect(config.defaultAccountLimit).toBe(1000)
    expect(config.futureCursor).toBe('stop')
    expect(config.logLevel).toBe('debug')
  })

  it.each([
    ['RELAY_API_LISTEN', 'abc'],
    ['RELAY_API_LISTEN', ':99999'],
    ['RELAY_METRICS_LISTEN', '2471'],
    ['DATABASE_URL', 'mysql://x'],
    ['RELAY_REPLAY_WINDOW', '3 days'],
    ['RELAY_DEFAULT_ACCOUNT_LIMIT', '-5'],
    ['RELAY_DEFAULT_ACCOUNT_LIMIT', '10.5'],
    ['RELAY_ALLOW_INSECURE_HOSTS', 'maybe'],
    ['RELAY_FUTURE_CURSOR', 'ignore'],
    ['LOG_LEVEL', 'loud'],
    ['RELAY_PLC_URL', 'ftp://plc'],
    ['RELAY_TRUSTED_DOMAINS', 'bad domain'],
    ['RELAY_INITIAL_SEQ', '0'],
  ])('refuses %s=%s with a message naming the variable', (variable, value) => {
    let error: unknown
    try {
      loadConfig({ [variable]: value })
    } catch (err) {
      error = err
    }
    expect(error).toBeInstanceOf(ConfigError)
    expect((error as ConfigError).variable).toBe(variable)
    expect((error as Error).message.startsWith(`${variable}: `)).toBe(true)
    expect((error as Error).message).not.toContain('\n')
  })

  it('sizes verification workers: auto leaves one core to the main thread, a number is taken as given', () => {
    const auto = Math.min(4, Math.max(0, availableParallelism() - 1))
    expect(loadConfig({}).verifyWorkers).toBe(auto)
    expect(loadConfig({ RELAY_VERIFY_WORKERS: 'AUTO' }).verifyWorkers).toBe(auto)
    expect(loadConfig({ RELAY_VERIFY_WORKERS: '0' }).verifyWorkers).toBe(0)
    expect(loadConfig({ RELAY_VERIFY_WORKERS: '3' }).verifyWorkers).toBe(3)
    expect(() => loadConfig({ RELAY_VERIFY_WORKERS: 'many' })).toThrow(/RELAY_VERIFY_WORKERS/)
    expect(() => loadConfig({ RELAY_VERIFY_WORKERS: '65' })).toThrow(/RELAY_VERIFY_WORKERS/)
  })

  it('bounds the slow-reader cut-off and the live-write pacing', () => {
    const defaults = loadConfig({})
    expect([defaults.consumerMinRate, defaults.consumerSlowWindowMs, defaults.firehoseFlushIntervalMs]).toEqual([100, 60_000, 10])
    const set = loadConfig({ RELAY_CONSUMER_MIN_RATE: '500', RELAY_CONSUMER_SLOW_WINDOW: '30s', RELAY_FIREHOSE_FLUSH_INTERVAL: '0ms' })
    expect([set.consumerMinRate, set.consumerSlowWindowMs, set.firehoseFlushIntervalMs]).toEqual([500, 30_000, 0])
    for (const [variable, bad] of [
      ['RELAY_CONSUMER_MIN_RATE', '0'],
      ['RELAY_CONSUMER_SLOW_WINDOW', '500ms'],
      ['RELAY_CONSUMER_SLOW_WINDOW', '2h'],
      ['RELAY_FIREHOSE_FLUSH_INTERVAL', '2s'],
      ['RELAY_FIREHOSE_FLUSH_INTERVAL', '10'],
    ] as const) {
      expect(() => loadConfig({ [variable]: bad }), `${variable}=${bad}`).toThrow(ConfigError)
      expect(() => loadConfig({ [variable]: bad }), `${variable}=${bad}`).toThrow(variable)
    }
  })

  it('parses durations and listen addresses', () => {
    expect(parseDuration('250ms', 'X')).toBe(250)
    expect(parseDuration('1d', 'X')).toBe(86_400_000)
    expect(parseListen(':2470', 'X')).toEqual({ host: undefined, port: 2470 })
    expect(parseListen('localhost:1', 'X')).toEqual({ host: 'localhost', port: 1 })
  })

  it('documents every variable in config/example.env and the README', () => {
    const example = readFileSync(new URL('../../config/example.env', import.meta.url), 'utf8')
    const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8')
    for (const variable of CONFIG_VARIABLES) {
      expect(example, variable).toMatch(new RegExp(`^#?\\s*${variable}=`, 'm'))
      expect(readme, variable).toContain(`\`${variable}\``)
    }
  })
})
