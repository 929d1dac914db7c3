/**
 * Runs the stateless event verification (`src/atproto/verify.ts`) either
 * inline on the main thread or in a pool of worker threads. Both return the
 * same trimmed outcome: what ingest needs for its stateful checks and the
 * new head, nothing that pins the frame buffer.
 *
 * The default is a pool of cores − 1 workers (RELAY_VERIFY_WORKERS=auto).
 * Early measurements on the 2-core dev machine favoured inline, because the
 * main thread was busy with database round trips and workers only competed
 * with it; after batch commits became one statement, one worker raised the
 * whole pipeline from ~3,100 to ~4,100 events/s (docs/benchmarks.md).
 */
import { createRequire } from 'node:module'
import { pathToFileURL } from 'node:url'
import { Worker } from 'node:worker_threads'
import type { Logger } from 'pino'
import type { PublicKey } from '../atproto/keys.js'
import type { DropReason } from '../atproto/drop-reasons.js'
import type { CollectionChanges } from '../atproto/mst/index.js'
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
      tolerated: DropReason[]
      /** #commit only: collections gained and emptied (listReposByCollection) */
      collections?: CollectionChanges
    }
  | { ok: false; reason: DropReason; message: string }

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

export class InlineVerifier implements Verifier {
  readonly mode = 'inline' as const
  verify(req: VerifyRequest): Promise<VerifyOutcome> {
    return Promise.resolve(runVerification(req.kind, req.body, req.key, req.options))
  }
  async ready(): Promise<void> {}
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
  /** Resolves when the worker script has loaded (it posts `{ready: true}`). */
  loaded: Promise<void>
  /** Loaded and not dead. */
  up: boolean
  /** Failed or exited: takes no more work. */
  dead: boolean
  outstanding: Map<number, { resolve: (o: VerifyOutcome) => void; reject: (e: Error) => void }>
}

/**
 * Starts the worker script next to this module: the compiled `.js` directly;
 * under a TypeScript runner (vitest, tsx) the `.ts` source, through a small
 * bootstrap that first registers tsx's loader in the worker thread (loader
 * hooks of the parent thread do not carry over to workers on Node 20).
 */
function startWorker(): Worker {
  const self = import.meta.url
  if (!self.endsWith('.ts')) return new Worker(new URL('./verify-worker.js', self))
  // tsx's ESM API (`tsx/esm/api`, import condition); require.resolve finds its CommonJS twin beside it.
  const tsxApi = pathToFileURL(createRequire(self).resolve('tsx/esm/api').replace(/\.cjs$/, '.mjs')).href
  const entry = new URL('./verify-worker.ts', self).href
  const bootstrap = `import(${JSON.stringify(tsxApi)}).then((tsx) => { tsx.register(); return import(${JSON.stringify(entry)}) })`
  return new Worker(bootstrap, { eval: true })
}

export class WorkerPoolVerifier implements Verifier {
  readonly mode = 'workers' as const
  private readonly slots: Slot[] = []
  private nextId = 1
  private closed = false

  constructor(
    size: number,
    private readonly logger: Logger,
  ) {
    if (!(size >= 1)) throw new RangeError('a worker pool needs at least one worker')
    for (let i = 0; i < size; i++) this.slots.push(this.spawn())
  }

  /** Resolves once every worker has loaded its script; rejects if one cannot. */
  async ready(): Promise<void> {
    await Promise.all(this.slots.map((s) => s.loaded))
  }

  private spawn(): Slot {
    const worker = startWorker()
    let loaded!: () => void
    let failedToLoad!: (err: Error) => void
    const slot: Slot = {
      worker,
      outstanding: new Map(),
      up: false,
      dead: false,
      loaded: new Promise<void>((resolve, reject) => {
        loaded = resolve
        failedToLoad = reject
      }),
    }
    slot.loaded.catch(() => undefined) // reported through ready() or the error log
    worker.on('message', (msg: WorkerResponse | { ready: true }) => {
      if ('ready' in msg) {
        slot.up = true
        loaded()
        return
      }
      const pending = slot.outstanding.get(msg.id)
      if (pending === undefined) return
      slot.outstanding.delete(msg.id)
      pending.resolve(msg.outcome)
    })
    const fail = (err: Error) => {
      failedToLoad(err)
      const outstanding = [...slot.outstanding.values()]
      slot.outstanding.clear()
      for (const p of outstanding) p.reject(err)
      if (this.closed || slot.dead) return
      slot.dead = true
      const wasUp = slot.up
      slot.up = false
      // A worker that never loaded would fail again: no respawn loop, the pool reports it instead.
      if (!wasUp) {
        this.logger.error({ err }, 'verify worker failed to start')
        return
      }
      this.logger.error({ err }, 'verify worker died; starting a new one')
      const i = this.slots.indexOf(slot)
      if (i >= 0) this.slots[i] = this.spawn()
    }
    worker.on('error', fail)
    worker.on('exit', (code) => {
      if (!this.closed || slot.outstanding.size > 0) fail(new Error(`verify worker exited with code ${code}`))
    })
    return slot
  }

  verify(req: VerifyRequest): Promise<VerifyOutcome> {
    if (this.closed) return Promise.reject(new Error('verifier closed'))
    // Least outstanding work first, among workers that are up (or still starting).
    let slot: Slot | undefined
    for (const s of this.slots) {
      if (s.dead) continue
      if (slot === undefined || s.outstanding.size < slot.outstanding.size) slot = s
    }
    if (slot === undefined) return Promise.reject(new Error('no verify worker is running'))
    const id = this.nextId++
    // A copy, transferred: the frame buffer itself stays on this thread.
    const bodyBytes = new Uint8Array(req.bodyBytes)
    const msg: WorkerRequest = { id, kind: req.kind, bodyBytes, didKey: req.key.didKey, options: req.options }
    const target = slot
    return new Promise<VerifyOutcome>((resolve, reject) => {
      target.outstanding.set(id, { resolve, reject })
      target.worker.postMessage(msg, [bodyBytes.buffer])
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
