/**
 * What `npm run bench` needs before its phases start, so that a fresh clone either installs it or
 * stops in one line naming what is missing (instead of a stack trace minutes into the run).
 * node_modules itself is checked by the `prebench` script (tsx is needed to get this far).
 */
import { execFileSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import pg from 'pg'

/** A missing prerequisite: run.ts prints the message alone and exits 1. */
export class BenchSetupError extends Error {
  override readonly name = 'BenchSetupError'
}

/** Phases that run the relay on Postgres (all but the floor, the reference consumer, PGlite and Jetstream). */
export const POSTGRES_PHASES: readonly string[] = ['ingest', 'plclimit', 'workers', 'latency', 'fanout', 'memory']

/**
 * The reference phase runs `@atproto/sync` from the e2e peer's own install (test/peer), which a fresh
 * clone does not have until `npm test` ran: install it (cached outside the clone, so usually instant)
 * rather than fail mid-run with "Cannot find module".
 */
export function ensureReferencePeer(root: string, log: (m: string) => void): void {
  if (existsSync(join(root, 'test/peer/node_modules/@atproto/sync/package.json'))) return
  log('reference phase needs test/peer installed: running test/peer/install.sh')
  try {
    execFileSync('sh', [join(root, 'test/peer/install.sh')], { stdio: ['ignore', 'inherit', 'inherit'] })
  } catch (err) {
    throw new BenchSetupError(`test/peer/install.sh failed (${(err as Error).message}): the reference phase needs it; run it by hand, or leave the phase out with --only`)
  }
}

/** Postgres reachable at `url` when a phase needs it. */
export async function checkPostgres(url: string, phases: readonly string[]): Promise<void> {
  const need = phases.filter((p) => POSTGRES_PHASES.includes(p))
  if (need.length === 0) return
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5_000 })
  try {
    await client.connect()
    await client.query('select 1')
  } catch (err) {
    const safe = url.replace(/(\/\/[^:@/]*):[^@/]*@/, '$1:…@') // no password in the message
    throw new BenchSetupError(`Postgres is not reachable at ${safe} (${(err as Error).message || String(err)}); ${need.length === 1 ? 'phase' : 'phases'} ${need.join(', ')} ${need.length === 1 ? 'needs' : 'need'} it: start it or set TEST_DATABASE_URL`)
  } finally {
    await client.end().catch(() => undefined)
  }
}
