/**
 * What the per-type handlers share, and the narrow views of the identity
 * directory and the sequencer that ingest depends on (the real classes fit).
 */
import type { Logger } from 'pino'
import type { IdentityResult } from '../identity/did-doc.js'
import type { DropReason } from '../atproto/drop-reasons.js'
import type { UpstreamTicket } from '../sequencer/host-cursors.js'
import type { AcceptedEvent } from '../sequencer/types.js'
import type { AccountStore } from './accounts.js'
import type { HostStats } from '../stats/host-stats.js'
import type { IngestMetrics } from './metrics.js'
import type { RepoStatusCheck } from './repo-status.js'
import type { Verifier } from './verify-runner.js'

export interface IngestIdentity {
  resolve(did: string, opts?: { forceRefresh?: boolean }): Promise<IdentityResult>
  /** What `resolve` would answer from memory at once, or undefined when it would have to look. */
  cached(did: string): IdentityResult | undefined
  /** Resolves afresh after an `#identity`, replacing what the caches hold. */
  refresh(did: string): Promise<IdentityResult>
  verifyHandle(did: string, handle: string): Promise<boolean>
}

export interface IngestSequencer {
  submit(evt: AcceptedEvent): Promise<number>
  /** `submit` that throws at once when the event is not taken; once it returns, the event commits in order or not at all. */
  take(evt: AcceptedEvent): Promise<number>
  /** Where ingest ends with a ticket: one still open is a bug, reported and dropped under `reason`. */
  settleTicket(ticket: UpstreamTicket, reason: DropReason): boolean
  /** A takedown removes the account's events from the replay log: required, so no sequencer can skip it. */
  readonly eventLog: { removeAccountEvents(accountId: number): Promise<number> }
}

export interface IngestContext {
  accounts: AccountStore
  identity: IngestIdentity
  sequencer: IngestSequencer
  stats: HostStats
  logger: Logger
  metrics: IngestMetrics
  verifier: Verifier
  /** RELAY_LENIENT: the default when a host has no override. */
  lenient: boolean
  maxFutureRevMs: number
  repoStatusCheck: RepoStatusCheck | undefined
  /** A stored non-active upstream status older than this is re-checked with the host. */
  statusRecheckMs: number
  now: () => number
}
