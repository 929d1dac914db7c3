/**
 * Frame intake for one upstream connection: turns a WebSocket message into
 * what the connection does with it (refuse it, act on an error frame, log an
 * #info, or queue an event). Pure: no socket, no counters.
 *
 * Every frame goes through decodeFrame, which checks the header first and
 * scans each body against its decode limits before decoding anything, so a
 * hostile frame costs a bounded scan, never a full decode.
 */
import { binaryMessageBytes, DECODED_TYPES, decodeFrame, FrameError, type FrameErrorReason, type MessageFrame } from '../atproto/frame.js'
import { clipUpstreamText as clip } from '../upstream-text.js'


/** Why a frame was refused: the drop reason, the connection-failure reason and the metrics label. */
export type RefusalReason = FrameErrorReason | 'text-frame'

export type Intake =
  /** Not a frame we accept: counted, and the connection ends. */
  | { kind: 'refused'; reason: RefusalReason; message: string }
  /** An `op: -1` frame; `text` is clipped for logs and status. */
  | { kind: 'error-frame'; error: string; message: string; text: string }
  /** Not queued: counted under `reason`; the connection carries on. */
  | { kind: 'dropped'; reason: 'bad-frame'; message: string }
  /** An event to queue with its seq, or an #info or unknown type (seq null). */
  | { kind: 'frame'; frame: MessageFrame; seq: number | null }

export function readMessage(data: Uint8Array | ArrayBuffer | readonly Uint8Array[], isBinary: boolean): { intake: Intake; size: number } {
  let bytes: Uint8Array
  try {
    bytes = binaryMessageBytes(data, isBinary)
  } catch (err) {
    return { intake: { kind: 'refused', reason: 'text-frame', message: (err as Error).message }, size: 0 }
  }
  return { intake: classify(bytes), size: bytes.length }
}

function classify(bytes: Uint8Array): Intake {
  let frame
  try {
    // #commit/#sync bodies are decoded in full only where they are verified (a verify worker).
    frame = decodeFrame(bytes, 'shallow')
  } catch (err) {
    const reason = err instanceof FrameError ? err.reason : 'bad-frame'
    return { kind: 'refused', reason, message: `refused frame (${reason}): ${(err as Error).message}` }
  }
  if (frame.op === -1) {
    // The host chooses this text (up to a whole frame): clip it before it is kept in stats, logs and the host row.
    const text = clip(`${frame.error}${frame.message ? `: ${frame.message}` : ''}`)
    return { kind: 'error-frame', error: frame.error, message: clip(frame.message ?? ''), text }
  }
  const rawSeq = frame.body.seq
  const seq = typeof rawSeq === 'number' && Number.isSafeInteger(rawSeq) && rawSeq > 0 ? rawSeq : null
  if (seq === null && DECODED_TYPES.has(frame.t)) {
    // Required on every type the relay handles and forwards: without it the host cursor could never cover the event.
    const shown = typeof rawSeq === 'number' ? String(rawSeq) : typeof rawSeq
    return { kind: 'dropped', reason: 'bad-frame', message: `${frame.t} without a positive integer seq (${shown})` }
  }
  return { kind: 'frame', frame, seq: frame.t === '#info' ? null : seq }
}

/** The fields of an #info worth logging (the body holds only its top-level scalars), clipped. */
export function infoFields(frame: MessageFrame): { name: string; message: string } {
  const { name, message } = frame.body
  return { name: clip(typeof name === 'string' ? name : String(name)), message: clip(typeof message === 'string' ? message : '') }
}
