/**
 * Per-key (per-DID) ordering with bounded concurrency and bounded queues.
 *
 * - One job per key holds the key at a time, in arrival order: events of one
 *   account are processed in upstream order. A job may let go of its key
 *   before it ends (`release`, passed to it): ingest does once the sequencer
 *   has the event, so an account's next event is checked against the head it
 *   set while the first one's commit is still on its way. Without that, one
 *   busy account ran at one event per commit round trip and filled its host's
 *   queue (docs/benchmarks-network.md). A released job still counts against
 *   every bound until it ends, so uncommitted events stay bounded.
 * - Admin jobs (`exclusive`) wait until every earlier job of the key has
 *   ended, released or not: a takedown sees the account's events committed.
 * - Jobs of different keys run concurrently, at most `hostConcurrency` per
 *   host and `maxInFlight` overall; hosts with ready work are served round
 *   robin so one busy host cannot starve the others.
 * - Queues are bounded: once a host has `hostQueueLimit` jobs waiting or
 *   running, or `maxQueued` are pending overall, `enqueue` returns a promise
 *   that resolves when there is room again. The crawler stops reading that
 *   host's socket meanwhile (TCP backpressure), so memory stays bounded.
 */

export interface SchedulerOptions {
  hostConcurrency: number
  maxInFlight: number
  hostQueueLimit: number
  maxQueued: number
  /** Told about anything a job throws (jobs are expected to handle their own errors). */
  onJobError: (err: unknown) => void
}

/** A FIFO with O(1) push and shift. */
export class Fifo<T> {
  private items: (T | undefined)[] = []
  private head = 0

  get length(): number {
    return this.items.length - this.head
  }

  push(item: T): void {
    this.items.push(item)
  }

  peek(): T | undefined {
    return this.items[this.head]
  }

  shift(): T | undefined {
    if (this.head >= this.items.length) return undefined
    const item = this.items[this.head]
    this.items[this.head++] = undefined
    if (this.head > 1024 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head)
      this.head = 0
    }
    return item
  }
}

/** A job's work; `release` lets the key's next event job start before this one ends. */
export type JobRun = (release: () => void) => Promise<void>

interface Job {
  lane: Lane
  run: JobRun
}

interface KeyQueue {
  key: string
  jobs: Fifo<Job>
  /** The started job that holds the key (has not released it), if any. */
  holder: Job | null
  /** Started jobs that have not ended (released ones included). */
  active: number
  /** Waiting in its head job's lane to be started. */
  offered: boolean
}

/** Per-host state: keys whose next job belongs to this host and may start now. */
interface Lane {
  id: number
  ready: Fifo<KeyQueue>
  running: number
  pending: number
  limited: boolean
  inRunnable: boolean
  waiters: (() => void)[]
}

/** Lane for admin operations: ordered with the DID's events but never limited. */
const ADMIN_LANE = -1

export class KeyedScheduler {
  private readonly keys = new Map<string, KeyQueue>()
  private readonly lanes = new Map<number, Lane>()
  private readonly runnable = new Fifo<Lane>()
  private readonly waiting = new Set<Lane>()
  private inFlight = 0
  private pendingTotal = 0
  private idleWaiters: (() => void)[] = []
  private pumping = false

  constructor(private readonly opts: SchedulerOptions) {
    if (!(opts.hostConcurrency >= 1 && opts.maxInFlight >= 1 && opts.hostQueueLimit >= 1 && opts.maxQueued >= 1)) {
      throw new RangeError('scheduler limits must all be at least 1')
    }
  }

  /** Jobs running now. */
  get running(): number {
    return this.inFlight
  }

  /** Jobs waiting to start. */
  get queued(): number {
    return this.pendingTotal - this.inFlight
  }

  /** Jobs waiting or running for one host. */
  hostPending(hostId: number): number {
    return this.lanes.get(hostId)?.pending ?? 0
  }

  /**
   * Queues `run` behind earlier jobs of `key`. Returns undefined while there
   * is room, or a promise resolving once the host (and the pipeline) has room again.
   */
  enqueue(hostId: number, key: string, run: JobRun): Promise<void> | undefined {
    const lane = this.lane(hostId, true)
    this.add(lane, key, run)
    if (lane.pending < this.opts.hostQueueLimit && this.pendingTotal < this.opts.maxQueued) return undefined
    return new Promise<void>((resolve) => {
      lane.waiters.push(resolve)
      this.waiting.add(lane)
    })
  }

  /** Runs `fn` in `key`'s order (after its queued events have ended), outside every limit; resolves with its result. */
  exclusive<T>(key: string, fn: () => Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.add(this.lane(ADMIN_LANE, false), key, () => fn().then(resolve, reject))
    })
  }

  /** Resolves when nothing is queued or running. */
  idle(): Promise<void> {
    if (this.pendingTotal === 0) return Promise.resolve()
    return new Promise((resolve) => this.idleWaiters.push(resolve))
  }

  private lane(id: number, limited: boolean): Lane {
    let lane = this.lanes.get(id)
    if (lane === undefined) {
      lane = { id, ready: new Fifo(), running: 0, pending: 0, limited, inRunnable: false, waiters: [] }
      this.lanes.set(id, lane)
    }
    return lane
  }

  private add(lane: Lane, key: string, run: JobRun): void {
    let q = this.keys.get(key)
    if (q === undefined) {
      q = { key, jobs: new Fifo(), holder: null, active: 0, offered: false }
      this.keys.set(key, q)
    }
    q.jobs.push({ lane, run })
    lane.pending++
    this.pendingTotal++
    if (q.jobs.length === 1) this.makeReady(q)
    this.pump()
  }

  /** Offers `q`'s head job on its lane when the key is free for it. */
  private makeReady(q: KeyQueue): void {
    if (q.holder !== null || q.offered) return
    const job = q.jobs.peek()
    if (job === undefined) return
    // An admin job waits for every earlier job to end, not just to let go of the key.
    if (!job.lane.limited && q.active > 0) return
    q.offered = true
    job.lane.ready.push(q)
    this.offer(job.lane)
  }

  private canStart(lane: Lane): boolean {
    return lane.ready.length > 0 && (!lane.limited || lane.running < this.opts.hostConcurrency)
  }

  private offer(lane: Lane): void {
    if (!lane.inRunnable && this.canStart(lane)) {
      lane.inRunnable = true
      this.runnable.push(lane)
    }
  }

  private pump(): void {
    // A job that releases its key from inside a start (synchronously) must not start another here:
    // the loop below picks the key up.
    if (this.pumping) return
    this.pumping = true
    try {
      this.pumpLoop()
    } finally {
      this.pumping = false
    }
  }

  private pumpLoop(): void {
    while (this.runnable.length > 0) {
      const lane = this.runnable.peek() as Lane
      // Admin jobs bypass the global bound; events wait for a free slot.
      if (lane.limited && this.inFlight >= this.opts.maxInFlight) {
        if (!this.rotateToAdmin()) return
        continue
      }
      this.runnable.shift()
      lane.inRunnable = false
      const q = lane.ready.shift()
      if (q === undefined) continue
      q.offered = false
      const job = q.jobs.shift() as Job
      q.holder = job
      q.active++
      lane.running++
      this.inFlight++
      this.start(q, job)
      this.offer(lane) // round robin: back of the line if it has more
    }
  }

  /** When the global bound is reached, let a waiting admin lane go first; false if there is none. */
  private rotateToAdmin(): boolean {
    const admin = this.lanes.get(ADMIN_LANE)
    if (admin === undefined || !admin.inRunnable) return false
    // Move limited lanes behind the admin lane (runnable holds at most one entry per lane).
    for (let i = this.runnable.length; i > 0; i--) {
      const lane = this.runnable.peek() as Lane
      if (!lane.limited) return true
      this.runnable.shift()
      this.runnable.push(lane)
    }
    return true
  }

  private start(q: KeyQueue, job: Job): void {
    let promise: Promise<void>
    try {
      promise = job.run(() => this.release(q, job))
    } catch (err) {
      promise = Promise.reject(err)
    }
    // One reaction per job (not catch + finally: two more promises per event).
    promise.then(
      () => this.finish(q, job),
      (err: unknown) => {
        try {
          this.opts.onJobError(err)
        } finally {
          this.finish(q, job)
        }
      },
    )
  }

  /** `job` lets go of its key: the key's next job may start (it still counts against the bounds until it ends). */
  private release(q: KeyQueue, job: Job): void {
    if (q.holder !== job) return
    q.holder = null
    this.makeReady(q)
    this.pump()
  }

  private finish(q: KeyQueue, job: Job): void {
    const lane = job.lane
    if (q.holder === job) q.holder = null
    q.active--
    lane.running--
    lane.pending--
    this.inFlight--
    this.pendingTotal--
    if (q.jobs.length > 0) this.makeReady(q)
    else if (q.active === 0 && q.holder === null) this.keys.delete(q.key)
    this.offer(lane)
    this.releaseWaiters()
    this.pump()
    if (this.pendingTotal === 0 && this.idleWaiters.length > 0) {
      const waiters = this.idleWaiters
      this.idleWaiters = []
      for (const w of waiters) w()
    }
  }

  private releaseWaiters(): void {
    if (this.waiting.size === 0 || this.pendingTotal >= this.opts.maxQueued) return
    for (const lane of this.waiting) {
      if (lane.pending >= this.opts.hostQueueLimit) continue
      this.waiting.delete(lane)
      const waiters = lane.waiters
      lane.waiters = []
      for (const w of waiters) w()
    }
  }
}
