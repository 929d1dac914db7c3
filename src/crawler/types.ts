/** The narrow interfaces between the crawler and the ingest pipeline. */
import type { MessageFrame } from '../atproto/frame.js'

/** What ingest needs to know about the host a frame came from. The crawler updates it in place when an admin changes the host. */
export interface UpstreamHost {
  id: number
  hostname: string
  ssl: boolean
  accountLimit: number
  /** Per-host strictness override; null follows RELAY_LENIENT. */
  lenient: boolean | null
  trusted: boolean
}

export interface IngestSink {
  /**
   * A decoded message frame from `host` (every op-1 frame except `#info`,
   * unknown types included), in arrival order. Returns undefined when taken at
   * once, or a promise that resolves when the pipeline has room again: the
   * crawler then stops reading that host's socket, queues frames already parsed,
   * and resumes after.
   */
  push(host: UpstreamHost, frame: MessageFrame, upstreamSeq: number | null): Promise<void> | undefined
}

/** The part of the sequencer the crawler uses. */
export interface HostCursorSource {
  /** In-memory cursor (latest contiguous handled upstream seq), undefined when unknown. */
  hostCursor(hostId: number): number | undefined
  /** Forget in-flight tracking for a host whose sequence was reset. */
  resetHost(hostId: number): void
}

export type FutureCursorPolicy = 'reset' | 'stop'
