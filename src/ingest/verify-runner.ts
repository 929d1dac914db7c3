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
import type { PublicKey } from '../atproto/keys.js'
import type { DropReason } from '../atproto/drop-reasons.js'
import type { CollectionChanges } from '../atproto/mst/index.js'
import type { VerifyOptions } from '../atproto/verify.js'
import { verifyBody } from './verify-body.js'
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
  /** Kernel thread ids of its worker threads (none inline, or off Linux), for their CPU time. */
  readonly threadIds: readonly number[]
}

export class InlineVerifier implements Verifier {
  readonly mode = 'inline' as const
  verify(req: VerifyRequest): Promise<VerifyOutcome> {
    return Promise.resolve(verifyBody(req.kind, req.bodyBytes, req.key, req.options))
  }
  async ready(): Promise<void> {}
  async close(): Promise<void> {}
  readonly threadIds: readonly number[] = []
}

export function createVerifier(workers: number, logger: Logger): Verifier {
  return workers > 0 ? new WorkerPoolVerifier(workers, logger) : new InlineVerifier()
}
