/**
 * Verification in a pool of worker threads, in batches: requests made in one
 * turn of the event loop go to a worker as one message, their bodies packed
 * into one transferred buffer, and the worker answers with one message per
 * batch (or per few ms of work, so a large batch does not hold back the first
 * answers). One message per event each way used to cost the main thread a
 * structured clone, an ArrayBuffer and a message-port wake-up per event
 * (docs/benchmarks.md, profile).
 */
import type { Worker } from 'node:worker_threads'
import type { Logger } from 'pino'
import type { VerifyOptions } from '../atproto/verify.js'
import { backoffCeiling, type BackoffOptions } from '../backoff.js'
import { startWorkerScript } from '../worker-script.js'
import { verifyBody } from './verify-body.js'
import type { Verifier, VerifyKind, VerifyOutcome, VerifyRequest } from './verify-runner.js'

/** What the main thread posts to a worker: a batch of requests. */
export interface WorkerBatch {
  ids: number[]
  kinds: VerifyKind[]
  didKeys: string[]
  options: VerifyOptions[]
  /** Every body, back to back (transferred). */
  bytes: ArrayBuffer
  /** Where each body ends in `bytes`; body i starts where body i − 1 ends. */
  ends: number[]
}

/** What a worker posts back: answers to some of the batch's requests, in any grouping. */
export interface WorkerAnswers {
  ids: number[]
  outcomes: VerifyOutcome[]
}

/** A batch is sent at the end of the event-loop turn, or earlier once it holds this much. */
const MAX_BATCH_REQUESTS = 256
const MAX_BATCH_BYTES = 4 * 1024 * 1024
/** Waits between attempts to start a replacement worker the system refused. */
const RESPAWN_BACKOFF: BackoffOptions = { baseMs: 1_000, maxMs: 60_000 }

interface Pending {
  resolve: (o: VerifyOutcome) => void
  reject: (e: Error) => void
}

interface Slot {
  worker: Worker
  /** Resolves when the worker script has loaded (it posts `{ready: true}`). */
  loaded: Promise<void>
  /** Loaded and not dead. */
  up: boolean
  /** Failed or exited: takes no more work. */
  dead: boolean
  /** Its kernel thread id, once loaded (Linux), for its CPU time. */
  tid: number | undefined
  outstanding: Map<number, Pending>
  /** Requests not sent yet. */
  batch: VerifyRequest[]
  batchIds: number[]
  batchBytes: number
}

export class WorkerPoolVerifier implements Verifier {
  readonly mode = 'workers' as const
  private readonly slots: Slot[] = []
  private nextId = 1
  private closed = false
  private flushScheduled = false
  private batches = 0
  private inlineCount = 0

  /** Requests verified on this thread because no worker was alive. */
  get verifiedInline(): number {
    return this.inlineCount
  }

  /** Messages sent to workers so far (each a batch of requests). */
  get batchesSent(): number {
    return this.batches
  }

  /** Kernel thread ids of the live workers (Linux), for their CPU time. */
  get threadIds(): number[] {
    const ids: number[] = []
    for (const s of this.slots) if (!s.dead && s.tid !== undefined) ids.push(s.tid)
    return ids
  }

  /** The live worker threads (for their own event-loop utilisation, e.g. in the bench). */
  get workerThreads(): readonly Worker[] {
    return this.slots.filter((s) => !s.dead).map((s) => s.worker)
  }

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
    const worker = startWorkerScript(import.meta.url, 'verify-worker')
    let loaded!: () => void
    let failedToLoad!: (err: Error) => void
    const slot: Slot = {
      worker,
      outstanding: new Map(),
      batch: [],
      batchIds: [],
      batchBytes: 0,
      up: false,
      dead: false,
      tid: undefined,
      loaded: new Promise<void>((resolve, reject) => {
        loaded = resolve
        failedToLoad = reject
      }),
    }
    slot.loaded.catch(() => undefined) // reported through ready() or the error log
    worker.on('message', (msg: WorkerAnswers | { ready: true; tid: number | undefined }) => {
      if ('ready' in msg) {
        slot.up = true
        slot.tid = msg.tid
        loaded()
        return
      }
      for (let i = 0; i < msg.ids.length; i++) {
        const id = msg.ids[i]!
        const pending = slot.outstanding.get(id)
        if (pending === undefined) continue
        slot.outstanding.delete(id)
        pending.resolve(msg.outcomes[i]!)
      }
    })
    const fail = (err: Error) => {
      failedToLoad(err)
      // Requests not sent yet go to another worker (or inline): verification is pure, nothing is lost.
      const unsent = slot.batch.map((req, k) => ({ req, id: slot.batchIds[k]! }))
      slot.batch = []
      slot.batchIds = []
      slot.batchBytes = 0
      const wasDead = slot.dead
      slot.dead = true
      const rerouted: { req: VerifyRequest; pending: Pending }[] = []
      for (const { req, id } of unsent) {
        const pending = slot.outstanding.get(id)
        slot.outstanding.delete(id)
        if (pending !== undefined) rerouted.push({ req, pending })
      }
      // Those in the worker's hands are failed (one of them may be what killed it); ingest retries them.
      const inFlight = [...slot.outstanding.values()]
      slot.outstanding.clear()
      for (const p of inFlight) p.reject(err)
      for (const { req, pending } of rerouted) {
        if (this.closed) pending.reject(err)
        else this.dispatch(req, pending)
      }
      if (this.closed || wasDead) return
      const wasUp = slot.up
      slot.up = false
      // A worker that never loaded would fail again: no respawn loop; verification goes on inline meanwhile.
      if (!wasUp) {
        this.logger.error({ err }, 'verify worker failed to start; verifying inline in its place')
        return
      }
      this.logger.error({ err }, 'verify worker died; starting a new one')
      this.respawn(slot, 1)
    }
    worker.on('error', fail)
    worker.on('exit', (code) => {
      if (!this.closed || slot.outstanding.size > 0) fail(new Error(`verify worker exited with code ${code}`))
    })
    return slot
  }

  verify(req: VerifyRequest): Promise<VerifyOutcome> {
    if (this.closed) return Promise.reject(new Error('verifier closed'))
    return new Promise<VerifyOutcome>((resolve, reject) => this.dispatch(req, { resolve, reject }))
  }

  /** To the least busy live worker, batched; inline when no worker is alive, so ingest never stalls on the pool. */
  private dispatch(req: VerifyRequest, pending: Pending): void {
    let slot: Slot | undefined
    for (const s of this.slots) {
      if (s.dead) continue
      if (slot === undefined || s.outstanding.size < slot.outstanding.size) slot = s
    }
    if (slot === undefined) {
      this.inlineCount++
      pending.resolve(verifyBody(req.kind, req.bodyBytes, req.key, req.options))
      return
    }
    const id = this.nextId++
    slot.outstanding.set(id, pending)
    slot.batch.push(req)
    slot.batchIds.push(id)
    slot.batchBytes += req.bodyBytes.length
    if (slot.batch.length >= MAX_BATCH_REQUESTS || slot.batchBytes >= MAX_BATCH_BYTES) this.send(slot)
    else if (!this.flushScheduled) {
      this.flushScheduled = true
      setImmediate(() => this.flush())
    }
  }

  /** A new worker in `dead`'s place; if the thread cannot be created (resource limits), tried again later. */
  private respawn(dead: Slot, attempt: number): void {
    if (this.closed) return
    const i = this.slots.indexOf(dead)
    if (i < 0) return
    try {
      this.slots[i] = this.spawn()
    } catch (err) {
      const delayMs = backoffCeiling(attempt, RESPAWN_BACKOFF)
      this.logger.error({ err, attempt, delayMs }, 'verify worker could not be started; verifying inline until it can')
      setTimeout(() => this.respawn(dead, attempt + 1), delayMs).unref()
    }
  }

  private flush(): void {
    this.flushScheduled = false
    for (const slot of this.slots) if (slot.batch.length > 0) this.send(slot)
  }

  /** Packs the slot's waiting requests into one message; the bodies are copied once, into one buffer. */
  private send(slot: Slot): void {
    const reqs = slot.batch
    const ids = slot.batchIds
    slot.batch = []
    slot.batchIds = []
    const bytes = new Uint8Array(slot.batchBytes)
    slot.batchBytes = 0
    const ends: number[] = new Array(reqs.length)
    const kinds: VerifyKind[] = new Array(reqs.length)
    const didKeys: string[] = new Array(reqs.length)
    const options: VerifyOptions[] = new Array(reqs.length)
    let pos = 0
    for (let i = 0; i < reqs.length; i++) {
      const r = reqs[i]!
      bytes.set(r.bodyBytes, pos)
      pos += r.bodyBytes.length
      ends[i] = pos
      kinds[i] = r.kind
      didKeys[i] = r.key.didKey
      options[i] = r.options
    }
    const msg: WorkerBatch = { ids, kinds, didKeys, options, bytes: bytes.buffer, ends }
    this.batches++
    slot.worker.postMessage(msg, [bytes.buffer])
  }

  async close(): Promise<void> {
    this.closed = true
    await Promise.all(this.slots.map((s) => s.worker.terminate()))
  }
}
