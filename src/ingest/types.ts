/**
 * The contract between the crawler and the ingest pipeline, and the drop
 * reasons ingest reports (every drop is counted per host under one of these).
 */
import type { DropReason } from '../atproto/drop-reasons.js'
import type { MessageFrame } from '../atproto/frame.js'
import type { UpstreamTicket } from '../sequencer/host-cursors.js'

/** One upstream host as the crawler knows it (a `host` row). */
export interface UpstreamHost {
  id: number
  /** lower-case hostname[:port], compared with the DID document's PDS host */
  hostname: string
  ssl: boolean
  accountLimit: number
  /** per-host strictness override; null follows the global setting */
  lenient: boolean | null
  trusted: boolean
}

export interface IngestSink {
  /**
   * A decoded message frame from `host`, with its upstream ticket (null when
   * it has no valid seq). The sink resolves the ticket exactly once: commits
   * it through the sequencer, drops it with a reason, or defers it. Return
   * undefined when taken at once, or a promise that resolves when the
   * pipeline has room again (the crawler pauses reading the socket meanwhile).
   */
  push(host: UpstreamHost, frame: MessageFrame, ticket: UpstreamTicket | null): Promise<void> | undefined
}

/** Why an event was dropped: the one closed list, with meanings, is src/atproto/drop-reasons.ts. */
export type { DropReason }

/** A deliberate drop inside ingest: carries the reason counted for the host. */
export class IngestDrop extends Error {
  override readonly name = 'IngestDrop'
  constructor(
    readonly reason: DropReason,
    message: string,
  ) {
    super(message)
  }
}

/**
 * A failure that may pass on its own, such as the PLC timing out: the event is
 * retried with a longer backoff (valid events must not be lost to a blip), and
 * dropped under `reason` only if it keeps failing.
 */
export class TransientIngestError extends Error {
  override readonly name = 'TransientIngestError'
  constructor(
    readonly reason: DropReason,
    message: string,
  ) {
    super(message)
  }
}

/** Why an identity that did not resolve stops an event: a definitive answer drops it, a failed lookup is retried. */
export function unresolvedIdentity(did: string, result: { status: string; error?: string }): Error {
  const message = `${did} does not resolve: ${result.status} (${result.error ?? 'no detail'})`
  return result.status === 'failed' ? new TransientIngestError('no-identity', message) : new IngestDrop('no-identity', message)
}

export type IngestErrorReason = 'unknown-account' | 'stopped'

/** An admin operation or a push that cannot be done. */
export class IngestError extends Error {
  override readonly name = 'IngestError'
  constructor(
    readonly reason: IngestErrorReason,
    message: string,
  ) {
    super(message)
  }
}
