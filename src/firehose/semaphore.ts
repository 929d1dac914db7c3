/** Bounds concurrent work, e.g. log reads by catching-up consumers, so they cannot starve the database pool. */
export class Semaphore {
  private active = 0
  private readonly waiters: (() => void)[] = []

  constructor(private readonly limit: number) {}

  async acquire(): Promise<() => void> {
    if (this.active >= this.limit) await new Promise<void>((resolve) => this.waiters.push(resolve))
    else this.active++
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
