/**
 * The ingest pipeline (DESIGN §2): takes decoded frames from the crawler,
 * orders them per DID, runs the per-type checks and hands accepted events to
 * the sequencer. Every upstream event's ticket (src/sequencer/host-cursors.ts)
 * ends exactly once: committed through the sequencer, dropped with a reason,
 * or deferred when stopping; one still open when its job ends is reported and
 * dropped, so a host cursor neither stalls nor passes an event not done with.
 *
 * Also the admin-facing account operations (takedown, restore, status,
 * releasing throttled accounts), which emit `#account` like upstream changes do.
 */
import { setTimeout as sleep } from 'node:timers/promises'
import type { Logger } from 'pino'
import type { Registry } from 'prom-client'
import { combinedStatus, type CombinedStatus } from '../atproto/account-status.js'
import type { MessageFrame } from '../atproto/frame.js'
import { MAX_FUTURE_REV_MS } from '../atproto/limits.js'
import { isValidDid } from '../atproto/syntax.js'
import { configDefault } from '../config.js'
import { backoffCeiling, type BackoffOptions } from '../backoff.js'
import type { Storage } from '../storage/db.js'
import type { LocalAccountStatus, UpstreamAccountStatus } from '../storage/types.js'
import type { UpstreamTicket } from '../sequencer/host-cursors.js'
import { SequencerError } from '../sequencer/types.js'
import { AccountStore, type AccountState } from './accounts.js'
import type { IngestContext, IngestIdentity, IngestSequencer } from './context.js'
import type { HostStats } from '../stats/host-stats.js'
import { createIngestMetrics } from './metrics.js'
import { handleRepoEvent } from './repo-events.js'
import type { RepoStatusCheck } from './repo-status.js'
import { KeyedScheduler } from './scheduler.js'
import { emitLocalAccountEvent, handleAccountEvent, handleIdentityEvent } from './status-events.js'
import { IngestDrop, IngestError, TransientIngestError, type DropReason, type IngestSink, type UpstreamHost } from './types.js'
import { createVerifier, type Verifier } from './verify-runner.js'

export interface IngestOptions {
  storage: Storage
  identity: IngestIdentity
  sequencer: IngestSequencer
  stats: HostStats
  logger: Logger
  registry: Registry
  /** RELAY_LENIENT: tolerate strict-only failures (hosts can override). */
  lenient: boolean
  /** How far ahead of now a rev may be (default 5 min). */
  maxFutureRevMs?: number
  /** RELAY_HOST_CONCURRENCY: events of one host processed at once (default from config.ts). */
  hostConcurrency?: number
  /** Events processed at once overall (default 256). */
  maxInFlight?: number
  /** Events queued per host before push asks the crawler to pause (default 8 × hostConcurrency). */
  hostQueueLimit?: number
  /** Events queued overall before every host is paused (default 8 × maxInFlight). */
  maxQueued?: number
  /** RELAY_VERIFY_WORKERS: worker threads for verification; 0 verifies inline. Required: its default (`auto`) is the relay's, in config.ts. */
  verifyWorkers: number
  /** Re-checks a stale non-active upstream status with the host; none when absent. */
  repoStatusCheck?: RepoStatusCheck
  /** A stored non-active status older than this is re-checked (default 60 s). */
  statusRecheckMs?: number
  /** RELAY_ACCOUNT_CACHE_SIZE: accounts kept in memory (default from config.ts). */
  accountCacheSize?: number
  /** Attempts for an event failing for a non-protocol reason before it is dropped (default 5). */
  maxAttempts?: number
  /** First wait before retrying a transient failure such as a PLC timeout; tripled each time, at most 30 s (default 1 s). */
  transientRetryBaseMs?: number
  /** Clock (ms), injectable for tests. */
  now?: () => number
}

export interface AccountStatusView {
  did: string
  accountId: number
  hostId: number
  localStatus: LocalAccountStatus
  upstreamStatus: UpstreamAccountStatus
  /** What the relay reports publicly. */
  combined: CombinedStatus
  head: { rev: string } | null
}

/** An internal hiccup (a lock, a busy pool) clears fast: retry within seconds. */
const INTERNAL_RETRY_BACKOFF: BackoffOptions = { baseMs: 100, maxMs: 2_000 }
/** A transient outside failure (PLC timing out) grows faster and waits longer; the base is an option. */
const TRANSIENT_RETRY_GROWTH = { factor: 3, maxMs: 30_000 }

const REMOVED_TYPES = new Set(['#handle', '#migrate', '#tombstone'])

/** Drops that are routine and not worth a log line above debug. */
const QUIET_DROPS = new Set<DropReason>(['duplicate', 'inactive', 'throttled', 'takendown', 'removed-type'])

export class IngestPipeline implements IngestSink {
  readonly accounts: AccountStore
  private readonly ctx: IngestContext
  private readonly scheduler: KeyedScheduler
  private readonly verifier: Verifier
  private readonly maxAttempts: number
  private readonly transientRetryBaseMs: number
  private stopped = false

  constructor(opts: IngestOptions) {
    const hostConcurrency = opts.hostConcurrency ?? configDefault('hostConcurrency')
    const maxInFlight = opts.maxInFlight ?? 256
    this.scheduler = new KeyedScheduler({
      hostConcurrency,
      maxInFlight,
      hostQueueLimit: opts.hostQueueLimit ?? hostConcurrency * 8,
      maxQueued: opts.maxQueued ?? maxInFlight * 8,
      onJobError: (err) => opts.logger.error({ err }, 'ingest job failed unexpectedly'),
    })
    this.verifier = createVerifier(opts.verifyWorkers, opts.logger)
    this.accounts = new AccountStore({ storage: opts.storage, cacheSize: opts.accountCacheSize ?? configDefault('accountCacheSize') })
    this.maxAttempts = opts.maxAttempts ?? 5
    this.transientRetryBaseMs = opts.transientRetryBaseMs ?? 1_000
    this.ctx = {
      accounts: this.accounts,
      identity: opts.identity,
      sequencer: opts.sequencer,
      stats: opts.stats,
      logger: opts.logger,
      metrics: createIngestMetrics(opts.registry, { inFlight: () => this.scheduler.running, queued: () => this.scheduler.queued }, this.verifier.mode),
      verifier: this.verifier,
      lenient: opts.lenient,
      maxFutureRevMs: opts.maxFutureRevMs ?? MAX_FUTURE_REV_MS,
      repoStatusCheck: opts.repoStatusCheck,
      statusRecheckMs: opts.statusRecheckMs ?? 60_000,
      now: opts.now ?? Date.now,
    }
  }

  /** Waits for the verify workers to load (fails fast when they cannot); a no-op inline. */
  async start(): Promise<void> {
    await this.verifier.ready()
  }

  /** Kernel thread ids of the verify workers (relay_thread_cpu_seconds_total). */
  get verifyThreadIds(): readonly number[] {
    return this.verifier.threadIds
  }

  /** 'inline' or 'workers'. */
  get verifyMode(): 'inline' | 'workers' {
    return this.verifier.mode
  }

  /** Events processing now / waiting. */
  get inFlight(): number {
    return this.scheduler.running
  }
  get queued(): number {
    return this.scheduler.queued
  }

  push(host: UpstreamHost, frame: MessageFrame, ticket: UpstreamTicket | null): Promise<void> | undefined {
    const upstreamSeq = ticket?.seq ?? null
    if (this.stopped) {
      // Deferred: the host cursor cannot pass it, so it is fetched again after restart.
      ticket?.defer('stopping')
      this.ctx.logger.debug({ host: host.hostname, seq: upstreamSeq }, 'ingest stopped; event not taken')
      return undefined
    }
    const t = frame.t
    const kind = kindOf(t)
    this.ctx.stats.received(host.hostname, kind)

    if (kind === 'removed' || kind === 'unknown') {
      this.drop(host, ticket, kind === 'removed' ? 'removed-type' : 'unknown-type', `message type ${t}`, undefined)
      return undefined
    }
    const did = kind === 'commit' ? frame.body.repo : frame.body.did
    if (typeof did !== 'string') {
      this.drop(host, ticket, 'bad-frame', `${t} without a DID`, undefined)
      return undefined
    }
    if (!isValidDid(did)) {
      this.drop(host, ticket, 'bad-syntax', `${t} with invalid DID ${JSON.stringify(did.slice(0, 80))}`, undefined)
      return undefined
    }
    return this.scheduler.enqueue(host.id, did, (release) => this.run(kind, host, frame, ticket, did, release))
  }

  /**
   * One event's job: runs the handler; protocol drops are final, other failures
   * are retried a few times with backoff. Where ingest ends, the ticket must be
   * resolved (a bug otherwise: reported and dropped). One async function per
   * event, not a wrapper around another: each level costs promises per event.
   *
   * `release` lets the DID's next event start: the handler calls it once the
   * sequencer has taken the event (its head set in memory), before the commit.
   * From then on the event is never retried: the sequencer has it.
   */
  private async run(
    kind: EventKind,
    host: UpstreamHost,
    frame: MessageFrame,
    ticket: UpstreamTicket | null,
    did: string,
    release: () => void,
  ): Promise<void> {
    let released = false
    const taken = () => {
      released = true
      release()
    }
    try {
      for (let attempt = 1; ; attempt++) {
        try {
          await this.handle(kind, host, frame, ticket, did, taken)
          return
        } catch (err) {
          const delayMs = this.afterFailure(err, attempt, host, ticket, did, released)
          if (delayMs === null) return
          await sleep(delayMs, undefined, { ref: false })
        }
      }
    } finally {
      if (ticket !== null && this.ctx.sequencer.settleTicket(ticket, 'internal-error')) {
        this.ctx.stats.dropped(host.hostname, 'internal-error')
        this.ctx.logger.error({ host: host.hostname, did, seq: ticket.seq }, 'ingest ended without resolving the event; dropped')
      }
    }
  }

  private handle(kind: EventKind, host: UpstreamHost, frame: MessageFrame, seq: UpstreamTicket | null, did: string, taken: () => void): Promise<void> {
    switch (kind) {
      case 'commit':
      case 'sync':
        return handleRepoEvent(this.ctx, kind, host, frame, seq, did, taken)
      case 'identity':
        return handleIdentityEvent(this.ctx, host, frame, seq, did, taken)
      case 'account':
        return handleAccountEvent(this.ctx, host, frame, seq, did, taken)
      default:
        throw new IngestDrop('unknown-type', `message type ${frame.t}`)
    }
  }

  /** After a failed attempt: drops or defers the event (null), or the wait before the next attempt. */
  private afterFailure(err: unknown, attempt: number, host: UpstreamHost, ticket: UpstreamTicket | null, did: string, taken: boolean): number | null {
    const seq = ticket?.seq ?? null
    if (taken || (ticket !== null && !ticket.open)) {
      // The sequencer already has it (committed, or deferred when it stopped): nothing to retry or drop.
      const fields = { err, host: host.hostname, did, seq, state: ticket?.state }
      if (err instanceof SequencerError && err.reason === 'stopped') this.ctx.logger.warn(fields, 'event not committed: the sequencer stopped')
      else this.ctx.logger.error(fields, 'event failed after the sequencer took it')
      return null
    }
    if (err instanceof IngestDrop) {
      this.drop(host, ticket, err.reason, err.message, did)
      return null
    }
    if (this.stopped || (err instanceof SequencerError && err.reason !== 'invalid-event')) {
      // Shutting down: deferred, so it is fetched again after restart.
      ticket?.defer('stopping')
      this.ctx.logger.warn({ err, host: host.hostname, did, seq }, 'event not processed: shutting down')
      return null
    }
    // A transient outside failure (PLC timing out) gets longer waits than an internal hiccup:
    // the identity layer allows one forced re-resolution per DID every few seconds.
    const transient = err instanceof TransientIngestError
    if (attempt >= this.maxAttempts) {
      this.ctx.logger.error({ err, host: host.hostname, did, seq, attempts: attempt }, 'event keeps failing; dropped')
      this.drop(host, ticket, transient ? err.reason : 'internal-error', (err as Error).message, did)
      return null
    }
    this.ctx.metrics.retries.inc()
    this.ctx.logger.warn({ err, host: host.hostname, did, seq, attempt }, 'event failed; retrying')
    // The account may have changed under the failed attempt: re-read it next time.
    this.accounts.forget(did)
    return transient
      ? backoffCeiling(attempt, { baseMs: this.transientRetryBaseMs, ...TRANSIENT_RETRY_GROWTH })
      : backoffCeiling(attempt, INTERNAL_RETRY_BACKOFF)
  }

  private drop(host: UpstreamHost, ticket: UpstreamTicket | null, reason: DropReason, message: string, did: string | undefined): void {
    ticket?.drop(reason)
    this.ctx.stats.dropped(host.hostname, reason)
    const fields = { host: host.hostname, did, seq: ticket?.seq, reason }
    if (QUIET_DROPS.has(reason)) {
      this.ctx.logger.debug(fields, `dropped: ${message}`)
    } else {
      this.ctx.stats.setLastError(host.hostname, `${reason}: ${message}`)
      this.ctx.logger.info(fields, `dropped: ${message}`)
    }
  }

  // ------------------------------------------------------------ admin operations

  /** The relay's view of an account, or null if unknown. */
  async accountStatus(did: string): Promise<AccountStatusView | null> {
    const acct = await this.accounts.get(did)
    if (acct === undefined) return null
    return {
      did: acct.did,
      accountId: acct.id,
      hostId: acct.hostId,
      localStatus: acct.localStatus,
      upstreamStatus: acct.upstreamStatus,
      combined: combinedStatus(acct.localStatus, acct.upstreamStatus),
      head: acct.head === null ? null : { rev: acct.head.rev },
    }
  }

  /**
   * Local takedown: the account's events leave the replay log, an `#account`
   * with the combined status (takendown) is emitted, and later events are dropped.
   */
  async takedown(did: string): Promise<AccountStatusView> {
    return this.setLocalStatus(did, 'takendown', async (acct) => {
      await this.ctx.sequencer.eventLog.removeAccountEvents(acct.id)
    })
  }

  /** Reverses a takedown; emits `#account` with the combined status. */
  async restore(did: string): Promise<AccountStatusView> {
    return this.setLocalStatus(did, 'active')
  }

  private async setLocalStatus(
    did: string,
    status: LocalAccountStatus,
    before?: (acct: AccountState) => Promise<void>,
  ): Promise<AccountStatusView> {
    // In the DID's order: no event of this account is half-processed meanwhile.
    await this.scheduler.exclusive(did, async () => {
      const acct = await this.accounts.get(did)
      if (acct === undefined) throw new IngestError('unknown-account', `no account ${did}`)
      await this.accounts.setLocalStatus(acct, status)
      // Before emitting: removing the account's events would otherwise remove this #account too.
      await before?.(acct)
      await emitLocalAccountEvent(this.ctx, acct)
      this.ctx.logger.info({ did, accountId: acct.id, status }, 'account local status changed')
    })
    return (await this.accountStatus(did)) as AccountStatusView
  }

  /**
   * After a host's account limit was raised: activates its throttled accounts
   * in arrival order up to the new limit and emits `#account` for each.
   * Returns the DIDs released.
   */
  async releaseThrottled(hostId: number): Promise<string[]> {
    const dids = await this.accounts.releaseThrottled(hostId)
    for (const did of dids) {
      await this.scheduler.exclusive(did, async () => {
        const acct = await this.accounts.get(did)
        if (acct !== undefined) await emitLocalAccountEvent(this.ctx, acct)
      })
    }
    if (dids.length > 0) {
      this.ctx.metrics.accounts.inc({ event: 'released' }, dids.length)
      this.ctx.logger.info({ hostId, released: dids.length }, 'throttled accounts released')
    }
    return dids
  }

  /** Resolves when every taken event has been processed. */
  idle(): Promise<void> {
    return this.scheduler.idle()
  }

  /** Stops taking events, waits (up to `timeoutMs`) for those in progress, and closes the verifier. */
  async stop(timeoutMs = 10_000): Promise<void> {
    this.stopped = true
    const outcome = await Promise.race([this.scheduler.idle().then(() => 'idle' as const), sleep(timeoutMs, 'timeout' as const, { ref: false })])
    if (outcome === 'timeout') this.ctx.logger.warn({ inFlight: this.scheduler.running, queued: this.scheduler.queued }, 'ingest stopped with events unprocessed')
    await this.verifier.close()
  }
}

type EventKind = 'commit' | 'sync' | 'identity' | 'account' | 'removed' | 'unknown'

/** A bounded label for metrics. */
function kindOf(t: string): EventKind {
  switch (t) {
    case '#commit':
      return 'commit'
    case '#sync':
      return 'sync'
    case '#identity':
      return 'identity'
    case '#account':
      return 'account'
    default:
      return REMOVED_TYPES.has(t) ? 'removed' : 'unknown'
  }
}
