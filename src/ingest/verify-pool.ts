/**
 * Verification in a pool of worker threads, in batches: requests made in one
 * turn of the event loop go to a worker as one message, their bodies packed
 * into one transferred buffer, and the worker answers with one message per
 * batch (or per few ms of work, so a large batch does not hold back the first
 * answers). One message per event each way used to cost the main thread a
 * structured clone, an ArrayBuffer and a message-port wake-up per event
 * (docs/benchmarks.md, profile).
 */
import { createRequire } from 'node:module'
import { pathToFileURL } from 'node:url'
import { Worker } from 'node:worker_threads'
import type { Logger } from 'pino'
import type { VerifyOptions } from '../atproto/verify.js'
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
  outstanding: Map<number, Pending>
  /** Requests not sent yet. */
  batch: VerifyRequest[]
  batchIds: number[]
  batchBytes: number
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
  private flushScheduled = false
  private batches = 0

  /** Messages sent to workers so far (each a batch of requests). */
  get batchesSent(): number {
    return this.batches
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
    const worker = startWorker()
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
      loaded: new Promise<void>((resolve, reject) => {
        loaded = resolve
        failedToLoad = reject
      }),
    }
    slot.loaded.catch(() => undefined) // reported through ready() or the error log
    worker.on('message', (msg: WorkerAnswers | { ready: true }) => {
      if ('ready' in msg) {
        slot.up = true
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
      const outstanding = [...slot.outstanding.values()]
      slot.outstanding.clear()
      slot.batch = []
      slot.batchIds = []
      slot.batchBytes = 0
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
    const target = slot
    return new Promise<VerifyOutcome>((resolve, reject) => {
      target.outstanding.set(id, { resolve, reject })
      target.batch.push(req)
      target.batchIds.push(id)
      target.batchBytes += req.bodyBytes.length
      if (target.batch.length >= MAX_BATCH_REQUESTS || target.batchBytes >= MAX_BATCH_BYTES) this.send(target)
      else if (!this.flushScheduled) {
        this.flushScheduled = true
        setImmediate(() => this.flush())
      }
    })
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
