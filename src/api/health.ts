/** `/xrpc/_health` and `/`: liveness that proves the database answers. */
import type { Storage } from '../storage/db.js'
import { VERSION } from '../package-root.js'
import type { HttpServer } from './http-server.js'
import { withTimeout } from '../with-timeout.js'

const PING_TIMEOUT_MS = 3_000

export interface HealthOptions {
  /** More fields for the answer (splitter mode: its upstream connection and lag). */
  extra?: () => Record<string, unknown>
}

export function registerHealthRoutes(http: HttpServer, storage: Storage, opts: HealthOptions = {}): void {
  // The writer thread (RELAY_DB_WRITER=thread): not up means the batch commits run on the main
  // thread. Still healthy, but an operator looking at a slow relay wants to see it.
  const writer = () => (storage.writer === undefined ? {} : { dbWriter: { state: storage.writer.state, statements: storage.writer.counts } })
  const health = async () => {
    try {
      await withTimeout(storage.ping(), PING_TIMEOUT_MS, () => new Error(`no answer within ${PING_TIMEOUT_MS} ms`))
      return { json: { status: 'ok', version: VERSION, ...writer(), ...opts.extra?.() } }
    } catch (err) {
      return {
        status: 503,
        json: { status: 'error', version: VERSION, error: 'DatabaseUnavailable', message: `database unreachable: ${errorMessage(err)}`, ...writer(), ...opts.extra?.() },
      }
    }
  }
  http.query('_health', health)
  http.route('GET', '/_health', health)
  http.route('GET', '/', () => ({
    text:
      `atrelay ${VERSION}: an AT Protocol relay.\n\n` +
      'Firehose: /xrpc/com.atproto.sync.subscribeRepos\n' +
      'Sync API: /xrpc/com.atproto.sync.*\n' +
      'Health:   /xrpc/_health\n',
  }))
}

function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err)
}
