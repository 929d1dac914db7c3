import type { AccountHead, EventKindCode } from '../storage/types.js'
import type { CollectionDelta } from './collection-writes.js'
import type { UpstreamTicket } from './host-cursors.js'

export type AcceptedKind = 'commit' | 'sync' | 'identity' | 'account'

/** An event that passed ingest and is handed to the sequencer. */
export interface AcceptedEvent {
  accountId: number
  did: string
  kind: AcceptedKind
  /** '#commit', '#sync', '#identity' or '#account' */
  t: string
  /** Canonical body bytes; the sequencer splices its seq in. */
  body: Uint8Array
  /** The account's new head, for #commit and #sync. */
  head?: AccountHead
  /** What it changes in the listReposByCollection index, written in the same statement as the event. */
  collections?: CollectionDelta
  /** Its upstream event's ticket (opened by the crawler): committing the event resolves it and moves the host cursor. */
  ticket?: UpstreamTicket
}

/** An event after its batch committed: what the firehose publishes. */
export interface CommittedEvent {
  seq: number
  /** Unix µs assigned with the seq (stored as event.time_us): Jetstream's time cursor. */
  timeUs: number
  accountId: number
  did: string
  kind: EventKindCode
  t: string
  /** The complete outbound frame (header + body with the relay seq). */
  frame: Uint8Array
  /** `frame` as one unmasked binary WebSocket message, when its source built one (the sequencer does); else the firehose builds it. */
  wire?: Buffer
  /** Jetstream's lazily built JSON and compressed frames of this event, shared by its subscribers (src/jetstream owns it). */
  jetstream?: unknown
}

/** What the firehose needs from a sequencer. */
export interface CommittedEventSource {
  onCommitted(listener: (events: CommittedEvent[]) => void): void
  /** The newest committed (and published) seq. */
  currentSeq(): number
}

export type SequencerErrorReason = 'not-started' | 'stopped' | 'invalid-event'

export class SequencerError extends Error {
  constructor(
    readonly reason: SequencerErrorReason,
    message: string,
  ) {
    super(message)
    this.name = 'SequencerError'
  }
}
