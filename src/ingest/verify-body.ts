/**
 * The verification every verifier runs, inline or in a worker: decode a body (bounded) and
 * verify it (src/atproto/verify.ts), trimmed to what ingest needs (VerifyOutcome).
 */
import { CborLimitError, decodeBounded } from '../atproto/cbor-scan.js'
import { isPlainMap } from '../atproto/frame.js'
import type { PublicKey } from '../atproto/keys.js'
import { FRAME_BODY_LIMITS } from '../atproto/limits.js'
import { verifyCommitEvent, verifySyncEvent, type VerifyOptions } from '../atproto/verify.js'
import type { VerifyKind, VerifyOutcome } from './verify-runner.js'

/** Pure: shared by the inline verifier and the worker. */
export function runVerification(kind: VerifyKind, body: Record<string, unknown>, key: PublicKey, options: VerifyOptions): VerifyOutcome {
  if (kind === 'commit') {
    const r = verifyCommitEvent(body, key, options)
    if (!r.ok) return r
    const f = r.facts
    return { ok: true, rev: f.rev, since: f.since, commitCid: f.commitCid, dataCid: f.dataCid, prevData: f.prevData, tolerated: f.tolerated, collections: f.collections }
  }
  const r = verifySyncEvent(body, key, options)
  if (!r.ok) return r
  const f = r.facts
  return { ok: true, rev: f.rev, since: null, commitCid: f.commitCid, dataCid: f.dataCid, prevData: null, tolerated: [] }
}

/**
 * Decodes a body (bounded: the crawler scanned it, but host bytes are never decoded unbounded)
 * and verifies it: what the inline verifier and every worker run.
 */
export function verifyBody(kind: VerifyKind, bodyBytes: Uint8Array, key: PublicKey, options: VerifyOptions): VerifyOutcome {
  let body: unknown
  try {
    body = decodeBounded(bodyBytes, FRAME_BODY_LIMITS, 'event body')
  } catch (err) {
    if (err instanceof CborLimitError) return { ok: false, reason: err.reason, message: err.message }
    return { ok: false, reason: 'bad-frame', message: `body does not decode: ${(err as Error).message}` }
  }
  if (!isPlainMap(body)) return { ok: false, reason: 'bad-frame', message: 'body is not a map' }
  return runVerification(kind, body, key, options)
}

