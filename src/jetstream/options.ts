/** What a JetstreamServer is built from (src/relay.ts and the splitter compose it from src/config.ts). */
import type { Logger } from 'pino'
import type { Registry } from 'prom-client'
import type { CommittedEventSource } from '../sequencer/types.js'
import type { JetLogSource } from './log-reader.js'

export interface JetstreamOptions {
  source: CommittedEventSource
  log: JetLogSource
  /** RELAY_JETSTREAM_RING_SIZE: recent events kept in memory. */
  ringSize: number
  /** Byte bound on the ring (frames, then built messages). */
  ringMaxBytes?: number
  /** RELAY_JETSTREAM_MAX_LAG: events a once-live subscriber may fall behind before its read rate is judged. */
  maxLag: number
  /** RELAY_CONSUMER_MIN_RATE: seqs/s a subscriber beyond the lag must keep reading, or it is closed (too-slow). */
  minRate?: number
  /** RELAY_CONSUMER_SLOW_WINDOW: how long it may read below that rate first. */
  slowWindowMs?: number
  /** Bytes buffered for a socket before its pump waits for it to drain. */
  highWaterBytes?: number
  /** Events per log read while replaying. */
  pageSize?: number
  /** Concurrent log reads across all Jetstream subscribers (protects the database pool). */
  maxConcurrentLogReads?: number
  closeGraceMs?: number
  /** Idle subscribers are pinged this often (the firehose's interval); one that never answers is dropped after two. */
  pingIntervalMs?: number
  /** With requireHello, the wait for the first options_update (HELLO_TIMEOUT_MS). */
  helloTimeoutMs?: number
  logger: Logger
  registry: Registry
}
