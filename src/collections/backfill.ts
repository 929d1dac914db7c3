/**
 * Backfill of the listReposByCollection index from the accounts' PDSes
 * (`describeRepo` → `collections`), for what ingest never saw: accounts the
 * relay knew before the index existed, history before the relay's first event
 * of an account, and repos a `#sync` may have changed arbitrarily.
 *
 * Two sources of work, both durable so a restart resumes where it stopped:
 * - one pass over every account in id order, its position in relay_state
 *   (`collections_backfill`); accounts added later are reached as it goes on;
 * - `collection_backfill` rows: accounts a #sync marked (written by the
 *   sequencer with the event) and failed attempts, each due at a time.
 *
 * An answer adds its collections (if absent) and removes the account's other
 * pairs only when the account's head rev is still the one read before the
 * request: a commit ingested meanwhile may have added a collection the answer
 * predates, and a pair is never removed on a guess.
 * Requests are rate-limited per host (KeyedTokenBucket) and bounded in number.
 */
import { sql } from 'kysely'
import type { Logger } from 'pino'
import { Counter, Gauge, type Registry } from 'prom-client'
import type { Dispatcher } from 'undici'
import { backoffCeiling, type BackoffOptions } from '../backoff.js'
import { KeyedTokenBucket } from '../identity/rate-limit.js'
import { createGuardedDispatcher, type AddressLookup } from '../net/net-guard.js'
import type { Storage } from '../storage/db.js'
import { describeRepoCollections, DescribeRepoError, type DescribeRepoFailure } from './describe-repo.js'

/** relay_state key of the first pass's position (the last account id done). */
export const BACKFILL_STATE_KEY = 'collections_backfill'

/** A failed attempt is retried after a minute, then less and less often, at most daily. */
const RETRY_BACKOFF: BackoffOptions = { baseMs: 60_000, maxMs: 86_400_000 }
/** A stale answer's account is read again after this (not at once: a busy account would be asked in a loop). */
export const STALE_REREAD_DELAY_MS = 1_000

export interface CollectionBackfillOptions {
  /** The ingest pool (it writes). */
  storage: Storage
  /** describeRepo requests per second per host (bursts of twice that). */
  ratePerHost: number
  /** Development: plain http and loopback hosts (RELAY_ALLOW_INSECURE_HOSTS). */
  allowInsecure: boolean
  userAgent: string
  /** Requests in flight at once, over all hosts. Default 8. */
  concurrency?: number
  /** Accounts read per round. Default 200. */
  pageSize?: number
  /** Wait when there is nothing to do. Default 30 s. */
  idleMs?: number
  /** Whole request. Default 10 s. */
  timeoutMs?: number
  /** Tests: DNS for the guarded dispatcher (loopback only). */
  addressLookup?: AddressLookup
  dispatcher?: Dispatcher
  logger: Logger
  registry: Registry
}

export interface CollectionBackfillStatus {
  running: boolean
  /** The first pass: last account id done, and the highest account id (done when equal). */
  walkPosition: number
  maxAccountId: number
  /** Accounts waiting in collection_backfill (after a #sync, or to retry). */
  queued: number
  /** Since start: accounts whose collections were read, and attempts that failed. */
  filled: number
  /** Answers not applied because the account's head moved while it was asked (read again later). */
  stale: number
  failed: number
  lastError: string | null
}

interface Target {
  id: number
  did: string
  hostname: string
  ssl: boolean
  upstream_status: string
  host_status: string
  rev: string | null
}

export class CollectionBackfill {
  private readonly storage: Storage
  private readonly logger: Logger
  private readonly budget: KeyedTokenBucket
  private readonly dispatcher: Dispatcher
  private readonly concurrency: number
  private readonly pageSize: number
  private readonly idleMs: number
  private readonly timeoutMs: number
  private readonly policy: { allowLoopback: boolean }
  private readonly userAgent: string
  private loop: Promise<void> | undefined
  private stopped = false
  private wake: (() => void) | undefined
  private state: CollectionBackfillStatus = { running: false, walkPosition: 0, maxAccountId: 0, queued: 0, filled: 0, stale: 0, failed: 0, lastError: null }
  private readonly mRequests: Counter<'outcome'>

  constructor(opts: CollectionBackfillOptions) {
    this.storage = opts.storage
    this.logger = opts.logger
    this.budget = new KeyedTokenBucket({ ratePerSec: opts.ratePerHost, burst: opts.ratePerHost * 2 })
    this.timeoutMs = opts.timeoutMs ?? 10_000
    this.policy = { allowLoopback: opts.allowInsecure }
    this.dispatcher =
      opts.dispatcher ??
      createGuardedDispatcher({ allowLoopback: opts.allowInsecure, responseTimeoutMs: this.timeoutMs, ...(opts.addressLookup ? { lookup: opts.addressLookup } : {}) })
    this.concurrency = opts.concurrency ?? 8
    this.pageSize = opts.pageSize ?? 200
    this.idleMs = opts.idleMs ?? 30_000
    this.userAgent = opts.userAgent
    const registers = [opts.registry]
    const status = () => this.state
    this.mRequests = new Counter({
      name: 'relay_collections_backfill_requests_total',
      help: 'describeRepo requests of the listReposByCollection backfill, by outcome (ok, or the failure reason)',
      labelNames: ['outcome'],
      registers,
    })
    new Gauge({
      name: 'relay_collections_backfill_position',
      help: 'The backfill first pass: last account id done (walk) and the highest account id (max); done when equal',
      labelNames: ['of'],
      registers,
      collect() {
        this.set({ of: 'walk' }, status().walkPosition)
        this.set({ of: 'max' }, status().maxAccountId)
      },
    })
    new Gauge({
      name: 'relay_collections_backfill_queued',
      help: 'Accounts waiting to have their collections read again (after a #sync, or to retry a failure)',
      registers,
      collect() {
        this.set(status().queued)
      },
    })
  }

  status(): CollectionBackfillStatus {
    return { ...this.state }
  }

  start(): void {
    if (this.loop !== undefined) return
    this.stopped = false
    this.state.running = true
    this.loop = this.run().finally(() => {
      this.state.running = false
    })
  }

  async stop(): Promise<void> {
    this.stopped = true
    this.wake?.()
    await this.loop
    this.loop = undefined
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      let worked = 0
      try {
        worked = await this.round()
      } catch (err) {
        this.state.lastError = (err as Error).message
        this.logger.warn({ err }, 'collections backfill round failed; trying again later')
      }
      if (worked === 0 && !this.stopped) await this.idle()
    }
  }

  private idle(): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, this.idleMs)
      timer.unref()
      const self = this
      function done() {
        clearTimeout(timer)
        self.wake = undefined
        resolve()
      }
      this.wake = done
    })
  }

  /** One round: due queued accounts first, then the next accounts of the first pass. Returns how many were tried. */
  async round(): Promise<number> {
    const db = this.storage.db
    const startedAt = new Date()
    const due = await db
      .selectFrom('collection_backfill')
      .select('account_id')
      .where('due_at', '<=', startedAt)
      .orderBy('due_at')
      .limit(this.pageSize)
      .execute()
    const position = await this.walkPosition()
    const room = this.pageSize - due.length
    const walk =
      room > 0
        ? await db.selectFrom('account').select('id').where('id', '>', position).orderBy('id').limit(room).execute()
        : []
    const ids = [...new Set([...due.map((r) => Number(r.account_id)), ...walk.map((r) => Number(r.id))])]
    if (ids.length > 0) {
      const targets = await this.targets(ids)
      // A queued account that is not there (or has no host) has nothing to read: its row goes, so it is not due forever.
      const found = new Set(targets.map((t) => t.id))
      const missing = due.map((r) => Number(r.account_id)).filter((id) => !found.has(id))
      if (missing.length > 0) await db.deleteFrom('collection_backfill').where('account_id', 'in', missing).execute()
      await this.each(targets, (t) => this.fill(t, startedAt))
    }
    // Every walked account is done or queued for a retry: the pass moves past them (not when stopped midway).
    const last = walk.at(-1)
    if (this.stopped) return ids.length
    if (last !== undefined) await this.saveWalkPosition(Number(last.id))
    await this.refreshCounts()
    return ids.length
  }

  private async fill(t: Target, startedAt: Date): Promise<void> {
    // A deleted account has nothing to list (its pairs went with its #account); a banned host is never asked.
    if (t.upstream_status === 'deleted' || t.host_status === 'banned') return this.settle(t.id, startedAt)
    const waitMs = this.budget.reserve(t.hostname)
    if (waitMs > 0) await new Promise((r) => setTimeout(r, waitMs))
    if (this.stopped) return
    let collections: string[]
    try {
      collections = await describeRepoCollections(t.hostname, t.ssl, t.did, {
        dispatcher: this.dispatcher,
        policy: this.policy,
        timeoutMs: this.timeoutMs,
        userAgent: this.userAgent,
      })
    } catch (err) {
      const reason: DescribeRepoFailure | 'error' = err instanceof DescribeRepoError ? err.reason : 'error'
      this.mRequests.inc({ outcome: reason })
      this.state.failed++
      this.state.lastError = `${t.did} on ${t.hostname}: ${(err as Error).message}`
      this.logger.debug({ err, host: t.hostname, did: t.did }, 'describeRepo for the collections backfill failed')
      await this.retryLater(t.id, (err as Error).message)
      return
    }
    this.mRequests.inc({ outcome: 'ok' })
    // The answer is applied only if the account's head did not move while it was asked: otherwise a
    // commit in between (a delete emptying a collection, say) may be newer than the answer, which
    // would re-add a stale pair. Then the account is queued to be read again instead.
    const { rows } = await sql<{ fresh: boolean }>`with fresh as (select (select rev from account_head where account_id = ${t.id}::int8) is not distinct from ${t.rev}::text as ok),
      names as (insert into collection (nsid) select v.nsid from unnest(${collections}::text[]) as v (nsid)
        where (select ok from fresh) and not exists (select 1 from collection c where c.nsid = v.nsid) on conflict (nsid) do nothing returning id),
      ids as (select id from names union all select id from collection where nsid = any(${collections}::text[])),
      add as (insert into repo_collection (collection_id, account_id) select id, ${t.id}::int8 from ids where (select ok from fresh) on conflict do nothing),
      gone as (delete from repo_collection where account_id = ${t.id}::int8 and collection_id not in (select id from ids) and (select ok from fresh)),
      done as (delete from collection_backfill where account_id = ${t.id}::int8 and due_at <= ${startedAt} and (select ok from fresh)),
      again as (insert into collection_backfill (account_id, reason, due_at) select ${t.id}::int8, 'sync', now() + ${`${STALE_REREAD_DELAY_MS} milliseconds`}::interval
        where not (select ok from fresh) on conflict (account_id) do nothing)
      select ok as fresh from fresh`.execute(this.storage.db)
    if (rows[0]?.fresh === false) {
      this.state.stale++
      this.mRequests.inc({ outcome: 'stale' })
      return
    }
    this.state.filled++
  }

  private async settle(accountId: number, startedAt: Date): Promise<void> {
    await this.storage.db.deleteFrom('collection_backfill').where('account_id', '=', accountId).where('due_at', '<=', startedAt).execute()
  }

  private async retryLater(accountId: number, error: string): Promise<void> {
    // attempts counts failures; the delay grows with them.
    const row = await this.storage.db.selectFrom('collection_backfill').select('attempts').where('account_id', '=', accountId).executeTakeFirst()
    const attempts = (row?.attempts ?? 0) + 1
    const dueAt = new Date(Date.now() + backoffCeiling(attempts, RETRY_BACKOFF))
    await this.storage.db
      .insertInto('collection_backfill')
      .values({ account_id: accountId, reason: 'retry', attempts, due_at: dueAt, last_error: error.slice(0, 500) })
      .onConflict((oc) => oc.column('account_id').doUpdateSet({ attempts, due_at: dueAt, last_error: error.slice(0, 500) }))
      .execute()
  }

  private async targets(ids: number[]): Promise<Target[]> {
    const rows = await this.storage.db
      .selectFrom('account')
      .innerJoin('host', 'host.id', 'account.host_id')
      .leftJoin('account_head', 'account_head.account_id', 'account.id')
      .select(['account.id', 'account.did', 'account.upstream_status', 'host.hostname', 'host.ssl', 'host.status as host_status', 'account_head.rev'])
      .where('account.id', 'in', ids)
      .orderBy('account.id')
      .execute()
    return rows.map((r) => ({ ...r, id: Number(r.id), rev: r.rev ?? null }))
  }

  /** Runs `fn` over `items`, at most `concurrency` at once. */
  private async each<T>(items: T[], fn: (item: T) => Promise<void>): Promise<void> {
    let next = 0
    const worker = async () => {
      while (next < items.length && !this.stopped) await fn(items[next++]!)
    }
    await Promise.all(Array.from({ length: Math.min(this.concurrency, items.length) }, worker))
  }

  private async walkPosition(): Promise<number> {
    const row = await this.storage.db.selectFrom('relay_state').select('value').where('key', '=', BACKFILL_STATE_KEY).executeTakeFirst()
    const position = Number(row?.value ?? 0)
    this.state.walkPosition = Number.isSafeInteger(position) ? position : 0
    return this.state.walkPosition
  }

  private async saveWalkPosition(id: number): Promise<void> {
    await this.storage.db
      .insertInto('relay_state')
      .values({ key: BACKFILL_STATE_KEY, value: JSON.stringify(id) })
      .onConflict((oc) => oc.column('key').doUpdateSet({ value: JSON.stringify(id), updated_at: sql`now()` }))
      .execute()
    this.state.walkPosition = id
  }

  private async refreshCounts(): Promise<void> {
    const row = await sql<{ max: number | null; queued: number }>`select (select max(id) from account) as max, (select count(*)::int from collection_backfill) as queued`.execute(this.storage.db)
    this.state.maxAccountId = Number(row.rows[0]?.max ?? 0)
    this.state.queued = Number(row.rows[0]?.queued ?? 0)
  }
}
