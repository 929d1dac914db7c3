/**
 * Bounds concurrent work so it cannot starve a database pool: log reads by
 * catching-up consumers (waiting without bound), and public API queries
 * (`tryAcquire`: a short, bounded wait, then a refusal the caller answers).
 */
export class Semaphore {
  private active = 0
  private readonly waiters: (() => void)[] = []

  constructor(private readonly limit: number) {}

  /** Work running now and work waiting for a slot. */
  get stats(): { active: number; waiting: number; limit: number } {
    return { active: this.active, waiting: this.waiters.length, limit: this.limit }
  }

  /** Runs `fn` in a slot, waiting for one first; the slot is given back however `fn` ends. */
  async run<T>(fn: () => Promise<T>): Promise<T> {
    const release = await this.acquire()
    try {
      return await fn()
    } finally {
      release()
    }
  }

  async acquire(): Promise<() => void> {
    if (this.active >= this.limit) await new Promise<void>((resolve) => this.waiters.push(resolve))
    else this.active++
    return this.releaser()
  }

  /**
   * A slot now, or after waiting behind at most `maxWaiting` others for at most
   * `timeoutMs`; undefined when the queue is full or the wait ran out.
   */
  async tryAcquire(opts: { maxWaiting: number; timeoutMs: number }): Promise<(() => void) | undefined> {
    if (this.active < this.limit) {
      this.active++
      return this.releaser()
    }
    if (this.waiters.length >= opts.maxWaiting || opts.timeoutMs <= 0) return undefined
    const granted = await new Promise<boolean>((resolve) => {
      const waiter = () => {
        clearTimeout(timer)
        resolve(true)
      }
      const timer = setTimeout(() => {
        const i = this.waiters.indexOf(waiter)
        if (i >= 0) this.waiters.splice(i, 1)
        resolve(false)
      }, opts.timeoutMs)
      this.waiters.push(waiter)
    })
    return granted ? this.releaser() : undefined
  }

  private releaser(): () => void {
    let released = false
    return () => {
      if (released) return
      released = true
      const next = this.waiters.shift()
      // The slot passes straight to the next waiter; `active` only drops when nobody waits.
      if (next !== undefined) next()
      else this.active--
    }
  }
}
