/** The narrow interfaces between the crawler and the ingest pipeline. */

// The crawler → ingest contract is defined once, by the ingest side that implements it.
export type { IngestSink, UpstreamHost } from '../ingest/types.js'
import type { UpstreamTicket } from '../sequencer/host-cursors.js'

/** The part of the sequencer the crawler uses. */
export interface HostCursorSource {
  /** In-memory cursor (latest contiguous handled upstream seq), undefined when unknown. */
  hostCursor(hostId: number): number | undefined
  /** Forget in-flight tracking for a host whose sequence was reset. */
  resetHost(hostId: number): void
  /** A frame with upstream `seq` arrived: its ticket, which ingest (or the crawler) resolves exactly once. */
  openTicket(hostId: number, seq: number): UpstreamTicket
}

/** RELAY_FUTURE_CURSOR: declared with the setting it comes from. */
export type { FutureCursorPolicy } from '../config.js'
