/**
 * Hosts close to their account limit, for alerting: past the limit, a host's new
 * accounts are throttled (their events dropped) until an operator raises it.
 * A limit of 0 (deliberately no accounts) is left out.
 * Counted from the host table at scrape time, at most every 30 s; no host label,
 * the admin API and `atrelay hosts list` name the hosts.
 */
import { sql } from 'kysely'
import type { Logger } from 'pino'
import { Gauge, type Registry } from 'prom-client'
import type { Storage } from '../storage/db.js'

const MIN_INTERVAL_MS = 30_000
/** "near": at least this percentage of the limit used. */
export const NEAR_ACCOUNT_LIMIT_PERCENT = 90

export function registerHostLimitMetrics(opts: { registry: Registry; storage: Storage; logger: Logger }): void {
  let at = 0
  let counts: { near: number; full: number } | undefined
  new Gauge({
    name: 'relay_hosts_account_limit',
    help: `Hosts not banned whose account count is near (>= ${NEAR_ACCOUNT_LIMIT_PERCENT}%) or at their account limit (full: new accounts are throttled)`,
    labelNames: ['level'],
    registers: [opts.registry],
    async collect() {
      if (Date.now() - at >= MIN_INTERVAL_MS) {
        at = Date.now()
        try {
          const row = await opts.storage.db
            .selectFrom('host')
            .select([
              sql<number>`count(*) filter (where account_count::int8 * 100 >= account_limit::int8 * ${sql.lit(NEAR_ACCOUNT_LIMIT_PERCENT)})`.as('near'),
              sql<number>`count(*) filter (where account_count >= account_limit)`.as('full'),
            ])
            .where('status', '!=', 'banned')
            .where('account_limit', '>', 0) // a limit of 0 is an operator's deliberate "no accounts"
            .executeTakeFirstOrThrow()
          counts = { near: Number(row.near), full: Number(row.full) }
        } catch (err) {
          opts.logger.warn({ err }, 'could not count hosts near their account limit for /metrics')
        }
      }
      if (counts) {
        this.set({ level: 'near' }, counts.near)
        this.set({ level: 'full' }, counts.full)
      }
    },
  })
}
