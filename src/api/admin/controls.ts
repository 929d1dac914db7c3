/**
 * What the admin surface can see and change. `relay.ts` implements it over the
 * running crawler, ingest pipeline, firehose and database, so the HTTP layer
 * stays a thin, testable translation.
 */
import type { DropReason } from '../../atproto/drop-reasons.js'
import type { ActivityView } from './activity.js'

export interface AdminHost {
  hostname: string
  status: string
  cursor: number
  accountCount: number
  accountLimit: number
  throttledAccounts: number
  trusted: boolean
  lenient: boolean | null
  firstSeen: string
  connected: boolean
  eventsPerSecond: number
  events: { received: number; accepted: number; dropped: Partial<Record<DropReason, number>>; discontinuities: number }
  lastError: { message: string; at: string | null } | null
  /** Held back by its event rate limits now (or within the last 10 s): since when, by which window and limit. */
  rateLimited: { since: string; window: 'perSecond' | 'perHour' | 'perDay'; limit: number } | null
}

export interface AdminAccount {
  did: string
  hostname: string
  localStatus: string
  upstreamStatus: string
  active: boolean
  status?: string
  rev: string | null
  head: string | null
}

export interface AdminConsumer {
  id: number | string
  remoteAddress: string
  userAgent: string
  eventsSent: number
  connectedAt: string
  cursor?: number | null
  lag?: number
}

export interface RelaySettings {
  requestCrawlEnabled: boolean
  newHostsPerDay: number
}

export class AdminError extends Error {
  constructor(
    readonly status: number,
    readonly error: string,
    message: string,
  ) {
    super(message)
    this.name = 'AdminError'
  }
}

export interface AdminControls {
  listHosts(): Promise<AdminHost[]>
  /** Admits a host (bypassing the public switch and the per-day limit); `added` when it was new. */
  addHost(hostname: string): Promise<{ hostname: string; outcome: 'added' | 'reconnecting' | 'connected' }>
  blockHost(hostname: string): Promise<void>
  unblockHost(hostname: string): Promise<void>
  setHostAccountLimit(hostname: string, limit: number): Promise<void>
  setHostLenient(hostname: string, lenient: boolean | null): Promise<void>
  listDomainBans(): Promise<{ domain: string; createdAt: string }[]>
  banDomain(domain: string): Promise<void>
  unbanDomain(domain: string): Promise<void>
  account(did: string): Promise<AdminAccount | null>
  takedown(did: string): Promise<void>
  restore(did: string): Promise<void>
  listTakedowns(): Promise<string[]>
  consumers(): AdminConsumer[]
  settings(): Promise<RelaySettings>
  updateSettings(change: Partial<RelaySettings>): Promise<RelaySettings>
  /** The last hour per minute: events, drops by reason, busiest hosts (the admin page's charts). */
  activity(): ActivityView
  /** The listReposByCollection backfill's progress (null when it is off). */
  collections?(): Promise<AdminCollections>
}

export interface AdminCollections {
  backfill: {
    running: boolean
    walkPosition: number
    maxAccountId: number
    queued: number
    filled: number
    failed: number
    lastError: string | null
  } | null
}
