/**
 * One relay event as Jetstream serves it, with its messages and their wire
 * frames built at most once, lazily, on first use, and shared by every
 * subscriber: the decode when the first subscriber whose DID filter passes
 * reaches it, each wire's JSON (v1, v2) when the first subscriber of that
 * wire does, and the text and zstd WebSocket frames when the first one that
 * wants each form. A live event's JetEvent is kept on its CommittedEvent
 * (`jetstream`), so live fan-out never re-reads or re-decodes it.
 */
import { wsFrame } from '../firehose/ring.js'
import type { CommittedEvent } from '../sequencer/types.js'
import { decodeJetEvent, renderV1, renderV2, type DecodedJetEvent, type JetKind, type JetMessage } from './event-messages.js'
import type { ZstdCodec } from './zstd.js'

export type JetWire = 'v1' | 'v2'
export type JetEncoding = 'text' | 'zstd'

export interface JetBuildContext {
  /** The wire's zstd codec (v1 and v2 have their own dictionaries). */
  zstd: (wire: JetWire) => ZstdCodec
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
    readonly wireKind: JetWire,
    readonly kind: JetKind,
    readonly collection: string | null,
    readonly json: Buffer,
  ) {}

  /** The complete WebSocket frame for `encoding`: a text frame of the JSON, or a binary frame of its zstd frame. */
  wire(encoding: JetEncoding, ctx: JetBuildContext): Buffer {
    if (encoding === 'text') return (this.text ??= wsFrame(this.json, 'text'))
    if (this.zstd === undefined) {
      const compressed = ctx.zstd(this.wireKind).compress(this.json)
      ctx.onCompressed(this.json.length, compressed.length)
      this.zstd = wsFrame(compressed, 'binary')
    }
    return this.zstd
  }
}

export class JetEvent {
  private decoded: DecodedJetEvent | undefined
  private v1: OutMessage[] | undefined
  private v2: OutMessage[] | undefined
  /** Set when the account was taken down: no longer sent to subscribers catching up through the ring. */
  removed = false

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

  /** Its messages on `wire`; the frame is decoded on the first call for either wire. An undecodable event has none (reported once). */
  messages(wire: JetWire, ctx: JetBuildContext): readonly OutMessage[] {
    const built = wire === 'v1' ? this.v1 : this.v2
    if (built !== undefined) return built
    const decoded = this.decode(ctx)
    const rendered = wire === 'v1' ? renderV1(decoded, this.timeUs) : renderV2(decoded, this.seq, this.timeUs)
    const out = rendered.map((m) => new OutMessage(wire, m.kind, m.collection, m.json))
    if (wire === 'v1') this.v1 = out
    else this.v2 = out
    return out
  }

  private decode(ctx: JetBuildContext): DecodedJetEvent {
    if (this.decoded !== undefined) return this.decoded
    try {
      this.decoded = decodeJetEvent(this.frame ?? new Uint8Array())
      if (this.decoded.skippedOps > 0) ctx.onSkipped(this.seq, this.decoded.skippedOps)
    } catch (err) {
      ctx.onUndecodable(this.seq, err)
      this.decoded = { kind: 'none', skippedOps: 0 }
    }
    this.frame = undefined // the decoded form replaces the frame in memory
    return this.decoded
  }
}
