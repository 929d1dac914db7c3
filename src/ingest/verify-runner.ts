/**
 * Runs the stateless event verification (`src/atproto/verify.ts`) either
 * inline on the main thread or in a pool of worker threads. Both return the
 * same trimmed outcome: what ingest needs for its stateful checks and the
 * new head, nothing that pins the frame buffer.
 *
 * The pool is verify-pool.ts (batched messages). The default is a pool of cores − 1 workers (RELAY_VERIFY_WORKERS=auto).
 * Early measurements on the 2-core dev machine favoured inline, because the
 * main thread was busy with database round trips and workers only competed
 * with it; after batch commits became one statement, one worker raised the
 * whole pipeline from ~3,100 to ~4,100 events/s (docs/benchmarks.md).
 */
import type { Logger } from 'pino'
import { CborLimitError, decodeBounded } from '../atproto/cbor-scan.js'
import { isPlainMap } from '../atproto/frame.js'
import type { PublicKey } from '../atproto/keys.js'
import { FRAME_BODY_LIMITS } from '../atproto/limits.js'
import type { DropReason } from '../atproto/drop-reasons.js'
import type { CollectionChanges } from '../atproto/mst/index.js'
import { verifyCommitEvent, verifySyncEvent, type VerifyOptions } from '../atproto/verify.js'
import { WorkerPoolVerifier } from './verify-pool.js'

export type VerifyKind = 'commit' | 'sync'

export type VerifyOutcome =
  | {
      ok: true
      rev: string
      /** #commit only */
      since: string | null
      commitCid: Uint8Array
      dataCid: Uint8Array
      /** #commit only */
      prevData: Uint8Array | null
      /** strict-only failures tolerated in lenient mode */
      tolerated: DropReason[]
      /** #commit only: collections gained and emptied (listReposByCollection) */
      collections?: CollectionChanges
    }
  | { ok: false; reason: DropReason; message: string }

export interface VerifyRequest {
  kind: VerifyKind
  /** The canonical body bytes, decoded (bounded) where the verification runs. */
  bodyBytes: Uint8Array
  key: PublicKey
  options: VerifyOptions
}

export interface Verifier {
  readonly mode: 'inline' | 'workers'
  verify(req: VerifyRequest): Promise<VerifyOutcome>
  /** Resolves when it can verify (workers loaded); rejects if it never will. */
  ready(): Promise<void>
  close(): Promise<void>
}

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

export class InlineVerifier implements Verifier {
  readonly mode = 'inline' as const
  verify(req: VerifyRequest): Promise<VerifyOutcome> {
    return Promise.resolve(verifyBody(req.kind, req.bodyBytes, req.key, req.options))
  }
  async ready(): Promise<void> {}
  async close(): Promise<void> {}
}

export function createVerifier(workers: number, logger: Logger): Verifier {
  return workers > 0 ? new WorkerPoolVerifier(workers, logger) : new InlineVerifier()
}
