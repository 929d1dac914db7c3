// Types for consumer.mjs.

export interface RawFrame {
  type: string
  size: number
  seq?: number
  time?: string
  did?: string
  rev?: string
  since?: string | null
  commit?: string
  prevData?: string
  tooBig?: boolean
  ops?: Array<{ action: string; path: string; cid: string | null; prev?: string }>
  carRoot?: string | null
  /** rev inside the CAR root (commit) block */
  commitRev?: string
  handle?: string
  active?: boolean
  status?: string
  name?: string
  error?: string
  message?: string
}

export interface FirehoseEvent {
  event: 'create' | 'update' | 'delete' | 'identity' | 'account' | 'sync'
  seq: number
  did: string
  time: string
  path?: string
  cid?: string | null
  rev?: string
  commit?: string
  handle?: string
  active?: boolean
  status?: string
}

export interface ConsumerState {
  frames: RawFrame[]
  rawErrors: Array<{ reason: string; message: string }>
  events: FirehoseEvent[]
  errors: Array<{ name: string; message: string; cause?: string; seq?: number }>
  lastRawSeq: number
}

export interface Consumer {
  state: ConsumerState
  /** The Firehose's subscription ended by itself (the server closed the socket cleanly). */
  firehoseEnded(): boolean
  firehoseCursor(): number | null
  caughtUp(): boolean
  waitUntil(predicate: (s: ConsumerState) => boolean, timeoutMs?: number, label?: string): Promise<void>
  stop(): Promise<ConsumerState>
}

export declare function startConsumer(opts: {
  service: string
  plcUrl: string
  startCursor?: number
  handlePdsUrls?: string[]
  raw?: boolean
  firehose?: boolean
  onEvent?: (e: Record<string, unknown>) => void
}): Consumer
