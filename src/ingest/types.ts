/**
 * The contract between the crawler and the ingest pipeline, and the drop
 * reasons ingest reports (every drop is counted per host under one of these).
 */
import type { MessageFrame } from '../atproto/frame.js'

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
   * A decoded message frame from `host`. Return undefined when taken at once,
   * or a promise that resolves when the pipeline has room again (the crawler
   * pauses reading the socket meanwhile).
   */
  push(host: UpstreamHost, frame: MessageFrame, upstreamSeq: number | null): Promise<void> | undefined
}

/**
 * Why ingest dropped an event. Verification failures use the protocol core's
 * own reasons (bad-car, bad-block-hash, bad-commit, bad-signature, …), so this
 * is an open string type; the named ones are ingest's own.
 */
export type DropReason =
  | 'bad-frame' // body fields missing or of the wrong type
  | 'bad-syntax' // a DID, TID, datetime or path that is not valid
  | 'too-big' // blocks or ops over the protocol limits
  | 'duplicate' // rev not newer than the stored head (silent)
  | 'wrong-host' // the DID document names another PDS
  | 'no-identity' // the DID does not resolve to a usable identity
  | 'bad-signature'
  | 'inactive' // upstream status not active
  | 'takendown' // local (relay admin) takedown
  | 'throttled' // host over its account limit when the account was created
  | 'too-deep' // CBOR nested deeper than its decode limit (frame or block)
  | 'too-many-items' // CBOR with more items than its decode limit
  | 'info' // an #info frame: logged, never forwarded (counted so floods show)
  | 'unknown-type'
  | 'removed-type' // #handle, #migrate, #tombstone
  | 'internal-error' // kept failing for a non-protocol reason; logged
  | (string & {})

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
