/**
 * One relay event as Jetstream serves it, with its messages and their wire
 * frames built at most once, lazily, on first use, and shared by every
 * subscriber: the JSON when the first subscriber whose DID filter passes
 * reaches it, the text WebSocket frame and the zstd frame when the first one
 * that wants each form. A live event's JetEvent is kept on its CommittedEvent
 * (`jetstream`), so live fan-out never re-reads or re-decodes it.
 */
import { wsFrame } from '../firehose/ring.js'
import type { CommittedEvent } from '../sequencer/types.js'
import { jetstreamMessages, type JetMessage } from './event-messages.js'
import type { ZstdCodec } from './zstd.js'

export type JetEncoding = 'text' | 'zstd'

export interface JetBuildContext {
  zstd: () => ZstdCodec
  /** Ops left out (record missing or undecodable), and events that could not be decoded at all. */
  onSkipped: (seq: number, ops: number) => void
  onUndecodable: (seq: number, err: unknown) => void
  /** JSON bytes and compressed bytes, for the compression-ratio metric. */
  onCompressed: (plainBytes: number, compressedBytes: number) => void
}

export class OutMessage implements JetMessage {
  private text: Buffer | undefined
  private zstd: Buffer | undefined

  constructor(
    readonly collection: string | null,
    readonly json: Buffer,
  ) {}

  /** The complete WebSocket frame for `encoding`: a text frame of the JSON, or a binary frame of its zstd frame. */
  wire(encoding: JetEncoding, ctx: JetBuildContext): Buffer {
    if (encoding === 'text') return (this.text ??= wsFrame(this.json, 'text'))
    if (this.zstd === undefined) {
      const compressed = ctx.zstd().compress(this.json)
      ctx.onCompressed(this.json.length, compressed.length)
      this.zstd = wsFrame(compressed, 'binary')
    }
    return this.zstd
  }
}

export class JetEvent {
  private built: OutMessage[] | undefined

  constructor(
    readonly seq: number,
    readonly timeUs: number,
    readonly did: string,
    private frame: Uint8Array | undefined,
  ) {}

  /** The JetEvent of a live event, made once and kept on the event for every later subscriber. */
  static of(e: CommittedEvent): JetEvent {
    if (e.jetstream instanceof JetEvent) return e.jetstream
    const jet = new JetEvent(e.seq, e.timeUs, e.did, e.frame)
    e.jetstream = jet
    return jet
  }

  /** Its v1 messages; decoded on the first call. An undecodable event has none (reported once). */
  messages(ctx: JetBuildContext): readonly OutMessage[] {
    if (this.built !== undefined) return this.built
    const frame = this.frame
    this.frame = undefined // the decoded messages replace the frame in memory
    try {
      const { messages, skippedOps } = jetstreamMessages(frame ?? new Uint8Array(), this.timeUs)
      if (skippedOps > 0) ctx.onSkipped(this.seq, skippedOps)
      this.built = messages.map((m) => new OutMessage(m.collection, m.json))
    } catch (err) {
      ctx.onUndecodable(this.seq, err)
      this.built = []
    }
    return this.built
  }

  /** Rough bytes held, for the ring's byte bound. */
  get bytes(): number {
    if (this.frame !== undefined) return this.frame.length
    let n = 0
    for (const m of this.built ?? []) n += m.json.length
    return n
  }
}
