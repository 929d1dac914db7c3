/** The contract of one upstream connection (host-connection.ts): its options, callbacks and status. */
import type { Logger } from 'pino'
import type { HostStats } from '../stats/host-stats.js'
import type { AddressLookup } from '../net/net-guard.js'
import type { BackoffOptions } from '../backoff.js'
import type { HoldReason } from './frame-queue.js'
import type { HostConnection } from './host-connection.js'
import type { CrawlerMetrics } from './metrics.js'
import type { RateLimitState } from './rate-limit.js'
import type { RateLimitedView } from './rate-limit-episode.js'
import type { HostCursorSource, IngestSink, UpstreamHost } from './types.js'

export type ConnectionState = 'connecting' | 'open' | 'backoff' | 'stopped'

export interface ConnectionFailure {
  /** Short machine-readable cause, also the metrics label. */
  reason: string
  message: string
}

export interface ConnectionCallbacks {
  onOpen(conn: HostConnection): void
  /** The connection ended or the dial failed; a retry is scheduled. */
  onFailure(conn: HostConnection, failure: ConnectionFailure): void
  /** The host answered FutureCursor to a cursor; the connection is stopped until the crawler decides. */
  onFutureCursor(conn: HostConnection, message: string, cursor: number): void
  /** The host's Server header says it is a relay; the connection is stopped. */
  onRelayLoop(conn: HostConnection, serverHeader: string): void
}

export interface HostConnectionOptions {
  host: UpstreamHost
  /** host.cursor from the database when the connection was created (0 = none). */
  storedCursor: number
  /**
   * With no cursor (0), subscribe live: true for a host admitted just now. Otherwise a 0
   * cursor is sent as `cursor=0`: after a restart, events a host sent before it were maybe
   * received but never handled (the cursor could not pass them) and must be fetched again.
   */
  startLive?: boolean
  sink: IngestSink
  stats: HostStats
  cursors: HostCursorSource
  callbacks: ConnectionCallbacks
  metrics: CrawlerMetrics
  logger: Logger
  /** Development: localhost hosts and loopback addresses. */
  allowInsecureHosts: boolean
  addressLookup?: AddressLookup | undefined
  backoff: BackoffOptions
  pingIntervalMs: number
  handshakeTimeoutMs: number
  /** How long without a rate-limit wait ends a rate-limit episode (default 10 s). */
  rateLimitQuietMs?: number | undefined
}

export interface ConnectionInfo {
  hostId: number
  hostname: string
  state: ConnectionState
  connectedSince: string | null
  /** The latest upstream seq seen (or the cursor the next dial will use). */
  cursor: number
  /** Consecutive failed connections (0 after a healthy connection: reconnect-backoff.ts). */
  attempt: number
  nextRetryAt: string | null
  lastError: string | null
  /** Why reading is paused, or null. */
  heldBack: HoldReason | null
  /** Held back by its rate limits now or within the last few seconds (one episode), or null. */
  rateLimited: RateLimitedView | null
  /** Parsed frames waiting for ingest or the rate limits. */
  queued: number
  rateLimits: RateLimitState
}
