/**
 * Runs the stateless event verification (`src/atproto/verify.ts`) either
 * inline on the main thread or in a pool of worker threads. Both return the
 * same trimmed outcome: what ingest needs for its stateful checks and the
 * new head, nothing that pins the frame buffer.
 */
import { Worker } from 'node:worker_threads'
import type { Logger } from 'pino'
import type { PublicKey } from '../atproto/keys.js'
import { verifyCommitEvent, verifySyncEvent, type VerifyOptions } from '../atproto/verify.js'

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
      tolerated: string[]
    }
  | { ok: false; reason: string; message: string }

export interface VerifyRequest {
  kind: VerifyKind
  /** The decoded body (used inline). */
  body: Record<string, unknown>
  /** The canonical body bytes (sent to workers, which decode them again). */
  bodyBytes: Uint8Array
  key: PublicKey
  options: VerifyOptions
}

export interface Verifier {
  readonly mode: 'inline' | 'workers'
  verify(req: VerifyRequest): Promise<VerifyOutcome>
  close(): Promise<void>
}

/** Pure: shared by the inline verifier and the worker. */
export function runVerification(kind: VerifyKind, body: Record<string, unknown>, key: PublicKey, options: VerifyOptions): VerifyOutcome {
  if (kind === 'commit') {
    const r = verifyCommitEvent(body, key, options)
    if (!r.ok) return r
    const f = r.facts
    return { ok: true, rev: f.rev, since: f.since, commitCid: f.commitCid, dataCid: f.dataCid, prevData: f.prevData, tolerated: f.tolerated }
  }
  const r = verifySyncEvent(body, key, options)
  if (!r.ok) return r
  const f = r.facts
  return { ok: true, rev: f.rev, since: null, commitCid: f.commitCid, dataCid: f.dataCid, prevData: null, tolerated: [] }
}

export class InlineVerifier implements Verifier {
  readonly mode = 'inline' as const
  verify(req: VerifyRequest): Promise<VerifyOutcome> {
    return Promise.resolve(runVerification(req.kind, req.body, req.key, req.options))
  }
  async close(): Promise<void> {}
}

/** What the main thread posts to a worker. */
export interface WorkerRequest {
  id: number
  kind: VerifyKind
  bodyBytes: Uint8Array
  didKey: string
  options: VerifyOptions
}

export interface WorkerResponse {
  id: number
  outcome: VerifyOutcome
}

interface Slot {
  worker: Worker
  outstanding: Map<number, { resolve: (o: VerifyOutcome) => void; reject: (e: Error) => void }>
}

/**
 * The worker script next to this module: `.js` when compiled, `.ts` under a
 * TypeScript loader (vitest, tsx), which the worker then needs too.
 */
function workerEntry(): { url: URL; execArgv: string[] } {
  const self = import.meta.url
  if (self.endsWith('.ts')) return { url: new URL('./verify-worker.ts', self), execArgv: ['--import', 'tsx'] }
  return { url: new URL('./verify-worker.js', self), execArgv: [] }
}

export class WorkerPoolVerifier implements Verifier {
  readonly mode = 'workers' as const
  private readonly slots: Slot[] = []
  private nextId = 1
  private closed = false

  constructor(
    private readonly size: number,
    private readonly logger: Logger,
  ) {
    if (!(size >= 1)) throw new RangeError('a worker pool needs at least one worker')
    for (let i = 0; i < size; i++) this.slots.push(this.spawn())
  }

  /** Resolves once every worker has loaded its script (or rejects if one cannot). */
  async ready(): Promise<void> {
    await Promise.all(
      this.slots.map(
        (s) =>
          new Promise<void>((resolve, reject) => {
            s.worker.once('online', () => resolve())
            s.worker.once('error', reject)
          }),
      ),
    )
  }

  private spawn(): Slot {
    const entry = workerEntry()
    const worker = new Worker(entry.url, { execArgv: entry.execArgv })
    const slot: Slot = { worker, outstanding: new Map() }
    worker.on('message', (msg: WorkerResponse) => {
      const pending = slot.outstanding.get(msg.id)
      if (pending === undefined) return
      slot.outstanding.delete(msg.id)
      pending.resolve(msg.outcome)
    })
    let dead = false
    const fail = (err: Error) => {
      const outstanding = [...slot.outstanding.values()]
      slot.outstanding.clear()
      for (const p of outstanding) p.reject(err)
      if (this.closed || dead) return
      dead = true
      this.logger.error({ err }, 'verify worker died; starting a new one')
      const i = this.slots.indexOf(slot)
      if (i >= 0) this.slots[i] = this.spawn()
    }
    worker.on('error', fail)
    worker.on('exit', (code) => {
      if (!this.closed || slot.outstanding.size > 0) fail(new Error(`verify worker exited with code ${code}`))
    })
    worker.unref()
    return slot
  }

  verify(req: VerifyRequest): Promise<VerifyOutcome> {
    if (this.closed) return Promise.reject(new Error('verifier closed'))
    // Least outstanding work first.
    let slot = this.slots[0] as Slot
    for (const s of this.slots) if (s.outstanding.size < slot.outstanding.size) slot = s
    const id = this.nextId++
    // A copy, transferred: the frame buffer itself stays on this thread.
    const bodyBytes = new Uint8Array(req.bodyBytes)
    const msg: WorkerRequest = { id, kind: req.kind, bodyBytes, didKey: req.key.didKey, options: req.options }
    return new Promise<VerifyOutcome>((resolve, reject) => {
      slot.outstanding.set(id, { resolve, reject })
      slot.worker.postMessage(msg, [bodyBytes.buffer])
    })
  }

  async close(): Promise<void> {
    this.closed = true
    await Promise.all(this.slots.map((s) => s.worker.terminate()))
  }
}

export function createVerifier(workers: number, logger: Logger): Verifier {
  return workers > 0 ? new WorkerPoolVerifier(workers, logger) : new InlineVerifier()
}
