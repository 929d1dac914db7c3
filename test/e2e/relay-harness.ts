// Starts the relay in-process for the e2e suite, on a given Postgres database, with its logs
// kept in memory (shown when something times out) and every name lookup kept on loopback.
import { Writable } from 'node:stream'
import { pino, type Level, type Logger } from 'pino'
import { loadConfig } from '../../src/config.js'
import { startRelay, type Relay } from '../../src/relay.js'

export interface TestRelay {
  relay: Relay
  /** http://127.0.0.1:<port> */
  url: string
}

export interface RelayLog {
  lines: string[]
  tail(n?: number): string
}

/** A pino logger that keeps its lines in memory (the last 5,000) instead of printing them. */
export function memoryLogger(level: Level = 'info'): { logger: Logger; log: RelayLog } {
  const log: RelayLog = {
    lines: [],
    tail: (n = 40) => log.lines.slice(-n).join(''),
  }
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      if (log.lines.length >= 5_000) log.lines.shift()
      log.lines.push(chunk.toString('utf8'))
      done()
    },
  })
  return { logger: pino({ level, base: { service: 'atrelay-e2e' } }, stream), log }
}

export interface TestRelayOptions {
  databaseUrl: string
  plcUrl: string
  adminPassword: string
  logger: Logger
  /**
   * Handle → DID without DNS: the dev PDSes serve their `.test` handles on
   * /.well-known/atproto-did; the relay asks through its DNS TXT hook instead.
   */
  resolveHandle: (handle: string) => Promise<string | undefined>
}

export async function startTestRelay(opts: TestRelayOptions): Promise<TestRelay> {
  const config = loadConfig({
    DATABASE_URL: opts.databaseUrl,
    RELAY_DB_POOL_SIZE: '5',
    RELAY_ALLOW_INSECURE_HOSTS: 'true',
    RELAY_PLC_URL: opts.plcUrl,
    RELAY_API_LISTEN: '127.0.0.1:0',
    RELAY_METRICS_LISTEN: '127.0.0.1:0',
    RELAY_ADMIN_PASSWORD: opts.adminPassword,
    LOG_LEVEL: 'info',
  })
  const relay = await startRelay(config, opts.logger, {
    // Short reconnect backoff: a restarted relay reconnects to the PDSes at once.
    backoff: { baseMs: 100, maxMs: 1_000 },
    // Every name (localhost, and the `.test` handles' HTTPS method) resolves to loopback: never real DNS.
    addressLookup: async () => [{ address: '127.0.0.1', family: 4 }],
    txtLookup: async (name) => {
      const did = name.startsWith('_atproto.') ? await opts.resolveHandle(name.slice('_atproto.'.length)) : undefined
      if (!did) throw Object.assign(new Error(`no TXT record for ${name}`), { code: 'ENOTFOUND' })
      return [[`did=${did}`]]
    },
  })
  return { relay, url: `http://127.0.0.1:${relay.apiAddress.port}` }
}
