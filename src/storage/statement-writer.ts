/**
 * The writer thread (RELAY_DB_WRITER=thread): the repeated group writes (the
 * sequencer's batch commit, the identity rows' group commit, the splitter's
 * log) run on a worker thread with a small `pg` pool of its own, so the main
 * thread does not serialise each batch into Bind messages, write ~100 KB to
 * the socket and parse the answer. What crosses the thread is one message per
 * statement: its text (the same few texts every time), its scalar parameters
 * and its Buffer parameters packed into one transferred buffer (one copy of
 * what the binary arrays already hold).
 *
 * Nothing waits on the thread alone: while it is starting again after dying,
 * or if it never loaded, statements run on the main thread's pool, and every
 * statement in the dead thread's hands is failed so its caller retries it
 * (the batch commit retries every failed batch).
 */
import type { Worker } from 'node:worker_threads'
import type { CompiledQuery } from 'kysely'
import type { Logger } from 'pino'
import { backoffCeiling, type BackoffOptions } from '../backoff.js'
import { startWorkerScript } from '../worker-script.js'
import type { RepeatedRunner } from './prepared-runner.js'
import { PREPARED_OFF_MESSAGE } from './prepared-runner.js'
import { fromWriterError, type WriterInit, type WriterReply, type WriterRequest } from './statement-writer-protocol.js'

/** Waits between attempts to start a writer thread again after one died. */
const RESTART_BACKOFF: BackoffOptions = { baseMs: 1_000, maxMs: 60_000 }
/** A thread that stayed up this long resets the restart backoff. */
const STAYED_UP_MS = 60_000
/** How long close() lets the thread end its pool before terminating it. */
const CLOSE_GRACE_MS = 5_000

export interface StatementWriterOptions {
  url: string
  /** Connections of the thread's own pool. */
  poolSize: number
  /** Where statements run while the thread is not up (the main thread's pool). */
  inline: RepeatedRunner
  logger?: Logger | undefined
}

interface Pending {
  resolve: () => void
  reject: (err: Error) => void
}

export class StatementWriter {
  private worker: Worker | undefined
  private up = false
  private everLoaded = false
  private closed = false
  private nextId = 1
  private startedAt = 0
  private restarts = 0
  private readonly outstanding = new Map<number, Pending>()
  private loaded!: Promise<void>
  private threadRuns = 0
  private inlineRuns = 0
  private gaveUp = false
  private tid: number | undefined

  constructor(private readonly opts: StatementWriterOptions) {
    this.start()
  }

  /** Statements run on the thread / on the main thread so far. */
  get counts(): { thread: number; inline: number } {
    return { thread: this.threadRuns, inline: this.inlineRuns }
  }

  /**
   * `up`; `starting` (the first thread is loading); `restarting` (one died, statements run on the
   * main thread until the next is up); `unavailable` (the first never loaded: main thread for good).
   */
  get state(): 'starting' | 'up' | 'restarting' | 'unavailable' {
    if (this.up) return 'up'
    if (this.gaveUp) return 'unavailable'
    return this.everLoaded ? 'restarting' : 'starting'
  }

  /** The thread's kernel id while it is up (Linux), for its CPU time. */
  get threadId(): number | undefined {
    return this.up ? this.tid : undefined
  }

  /** The thread, while it is up (the bench reads its CPU). */
  get thread(): Worker | undefined {
    return this.up ? this.worker : undefined
  }

  /** Resolves once the first thread has loaded; rejects if it could not (statements then run inline). */
  ready(): Promise<void> {
    return this.loaded
  }

  run(query: CompiledQuery): Promise<void> {
    const worker = this.worker
    if (!this.up || worker === undefined) {
      this.inlineRuns++
      return this.opts.inline(query.sql, query.parameters)
    }
    const id = this.nextId++
    const values = query.parameters.slice()
    const buffers: [number, number, number][] = []
    let size = 0
    for (let i = 0; i < values.length; i++) {
      const v = values[i]
      if (v instanceof Uint8Array) size += v.length
    }
    const bytes = new Uint8Array(size)
    let pos = 0
    for (let i = 0; i < values.length; i++) {
      const v = values[i]
      if (!(v instanceof Uint8Array)) continue
      bytes.set(v, pos)
      buffers.push([i, pos, pos + v.length])
      pos += v.length
      values[i] = null
    }
    const msg: WriterRequest = { id, text: query.sql, values, buffers, bytes: bytes.buffer }
    this.threadRuns++
    return new Promise<void>((resolve, reject) => {
      this.outstanding.set(id, { resolve, reject })
      worker.postMessage(msg, [bytes.buffer])
    })
  }

  private start(): void {
    if (this.closed) return
    let loaded!: () => void
    let failed!: (err: Error) => void
    this.loaded = new Promise<void>((resolve, reject) => {
      loaded = resolve
      failed = reject
    })
    this.loaded.catch(() => undefined) // reported through ready() and the log
    this.startedAt = Date.now()
    let worker: Worker
    try {
      const init: WriterInit = { url: this.opts.url, poolSize: this.opts.poolSize }
      worker = startWorkerScript(import.meta.url, 'statement-writer-worker', { workerData: init })
      this.worker = worker
    } catch (err) {
      failed(err as Error)
      this.scheduleRestart(err as Error)
      return
    }
    worker.on('message', (msg: WriterReply) => {
      if ('ready' in msg) {
        this.tid = msg.tid
        this.up = true
        this.everLoaded = true
        loaded()
      } else if ('preparedOff' in msg) {
        this.opts.logger?.warn({ err: fromWriterError(msg.preparedOff), code: msg.preparedOff.fields.code }, PREPARED_OFF_MESSAGE)
      } else if ('poolError' in msg) {
        this.opts.logger?.warn({ err: fromWriterError(msg.poolError), pool: 'writer' }, 'idle database connection failed')
      } else {
        const pending = this.outstanding.get(msg.id)
        if (pending === undefined) return
        this.outstanding.delete(msg.id)
        if (msg.error === undefined) pending.resolve()
        else pending.reject(fromWriterError(msg.error))
      }
    })
    let ended = false
    const end = (err: Error) => {
      if (ended) return
      ended = true
      const wasUp = this.up
      this.up = false
      this.worker = undefined
      failed(err)
      const inHand = [...this.outstanding.values()]
      this.outstanding.clear()
      for (const p of inHand) p.reject(err)
      if (this.closed) return
      if (!this.everLoaded) {
        // It would fail the same way again: statements go on on the main thread, for good.
        this.gaveUp = true
        this.opts.logger?.error({ err }, 'database writer thread failed to start; repeated statements run on the main thread')
        return
      }
      this.opts.logger?.error({ err, failed: inHand.length, wasUp }, 'database writer thread died; statements run on the main thread until it is back')
      this.scheduleRestart(err)
    }
    worker.on('error', end)
    worker.on('exit', (code) => end(new Error(`database writer thread exited with code ${code}`)))
  }

  private scheduleRestart(err: Error): void {
    if (this.closed) return
    if (Date.now() - this.startedAt > STAYED_UP_MS) this.restarts = 0
    this.restarts++
    const delayMs = backoffCeiling(this.restarts, RESTART_BACKOFF)
    this.opts.logger?.info({ delayMs, attempt: this.restarts, reason: err.message }, 'starting the database writer thread again')
    setTimeout(() => this.start(), delayMs).unref()
  }

  async close(): Promise<void> {
    this.closed = true
    const worker = this.worker
    if (worker === undefined) return
    const exited = new Promise<void>((resolve) => worker.once('exit', () => resolve()))
    worker.postMessage('close')
    const timer = setTimeout(() => void worker.terminate(), CLOSE_GRACE_MS)
    await exited
    clearTimeout(timer)
  }
}
