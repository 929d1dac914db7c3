import { describe, expect, it } from 'vitest'
import { Fifo, KeyedScheduler } from '../../src/ingest/scheduler.js'

function deferred() {
  let resolve!: () => void
  const promise = new Promise<void>((r) => (resolve = r))
  return { promise, resolve }
}

const tick = () => new Promise((r) => setImmediate(r))

describe('Fifo', () => {
  it('keeps order across compaction', () => {
    const q = new Fifo<number>()
    for (let i = 0; i < 5000; i++) q.push(i)
    const out: number[] = []
    for (let i = 0; i < 3000; i++) out.push(q.shift()!)
    for (let i = 5000; i < 6000; i++) q.push(i)
    while (q.length > 0) out.push(q.shift()!)
    expect(out).toEqual(Array.from({ length: 6000 }, (_, i) => i))
    expect(q.shift()).toBeUndefined()
  })
})

describe('KeyedScheduler', () => {
  it('runs one job per key at a time, in order, and keys concurrently within the host bound', async () => {
    const s = new KeyedScheduler({ hostConcurrency: 2, maxInFlight: 10, hostQueueLimit: 100, maxQueued: 100, onJobError: () => {} })
    const gates = new Map<string, ReturnType<typeof deferred>>()
    const log: string[] = []
    let running = 0
    let maxRunning = 0
    const job = (name: string) => async () => {
      running++
      maxRunning = Math.max(maxRunning, running)
      log.push(`start ${name}`)
      const g = deferred()
      gates.set(name, g)
      await g.promise
      running--
      log.push(`end ${name}`)
    }
    for (const name of ['a1', 'b1', 'a2', 'c1', 'b2']) s.enqueue(1, name[0]!, job(name))
    await tick()
    expect(log).toEqual(['start a1', 'start b1'])
    gates.get('a1')!.resolve()
    await tick()
    // c1 waits behind the host bound; a2 is next for key a… but round robin serves the ready keys in order.
    expect(log.slice(2)).toEqual(['end a1', 'start c1'])
    gates.get('b1')!.resolve()
    await tick()
    gates.get('c1')!.resolve()
    await tick()
    gates.get('a2')?.resolve()
    gates.get('b2')?.resolve()
    await tick()
    gates.get('a2')?.resolve()
    gates.get('b2')?.resolve()
    await s.idle()
    expect(maxRunning).toBe(2)
    const order = (k: string) => log.filter((l) => l.includes(` ${k}`))
    expect(order('a')).toEqual(['start a1', 'end a1', 'start a2', 'end a2'])
    expect(order('b')).toEqual(['start b1', 'end b1', 'start b2', 'end b2'])
  })

  it('bounds in-flight jobs globally and serves hosts round robin', async () => {
    const s = new KeyedScheduler({ hostConcurrency: 5, maxInFlight: 2, hostQueueLimit: 100, maxQueued: 100, onJobError: () => {} })
    const started: string[] = []
    const gates: (() => void)[] = []
    const job = (name: string) => () =>
      new Promise<void>((resolve) => {
        started.push(name)
        gates.push(resolve)
      })
    // Two jobs of host 3 fill the global bound; then both other hosts queue work.
    s.enqueue(3, 'h3-0', job('h3-0'))
    s.enqueue(3, 'h3-1', job('h3-1'))
    for (let i = 0; i < 3; i++) s.enqueue(1, `h1-${i}`, job(`h1-${i}`))
    for (let i = 0; i < 3; i++) s.enqueue(2, `h2-${i}`, job(`h2-${i}`))
    await tick()
    expect(started).toEqual(['h3-0', 'h3-1'])
    expect(s.running).toBe(2)
    expect(s.queued).toBe(6)
    // Each freed slot goes to the next host in turn.
    for (let i = 0; i < 4; i++) {
      gates.shift()!()
      await tick()
    }
    expect(started).toEqual(['h3-0', 'h3-1', 'h1-0', 'h2-0', 'h1-1', 'h2-1'])
    expect(s.running).toBe(2)
    while (gates.length > 0) {
      gates.shift()!()
      await tick()
    }
    await s.idle()
    expect(started).toHaveLength(8)
  })

  it('returns a backpressure promise past the host queue limit and releases it when there is room', async () => {
    const s = new KeyedScheduler({ hostConcurrency: 1, maxInFlight: 1, hostQueueLimit: 2, maxQueued: 10, onJobError: () => {} })
    const gates: (() => void)[] = []
    const job = () => new Promise<void>((resolve) => gates.push(resolve))
    expect(s.enqueue(1, 'a', job)).toBeUndefined()
    const wait = s.enqueue(1, 'b', job)
    expect(wait).toBeInstanceOf(Promise)
    // Another host is not paused by host 1's queue.
    expect(s.enqueue(2, 'c', job)).toBeUndefined()
    let released = false
    void wait!.then(() => (released = true))
    await tick()
    expect(released).toBe(false)
    gates.shift()!()
    await tick()
    expect(released).toBe(true)
    while (gates.length > 0) {
      gates.shift()!()
      await tick()
    }
    await s.idle()
  })

  it('runs exclusive work in key order outside the limits and reports job errors', async () => {
    const errors: unknown[] = []
    const s = new KeyedScheduler({ hostConcurrency: 1, maxInFlight: 1, hostQueueLimit: 10, maxQueued: 10, onJobError: (e) => errors.push(e) })
    const log: string[] = []
    let release!: () => void
    s.enqueue(1, 'x', () => new Promise<void>((r) => (release = r)).then(() => void log.push('event x')))
    const other = s.exclusive('y', async () => {
      log.push('admin y')
      return 7
    })
    const mine = s.exclusive('x', async () => {
      log.push('admin x')
      return 'done'
    })
    expect(await other).toBe(7) // not blocked by the global bound
    release()
    expect(await mine).toBe('done')
    expect(log).toEqual(['admin y', 'event x', 'admin x'])
    s.enqueue(1, 'z', async () => {
      throw new Error('boom')
    })
    await s.idle()
    expect(errors).toHaveLength(1)
  })

  it('starts a key’s next job once the running one releases the key, and counts the released one until it ends', async () => {
    const s = new KeyedScheduler({ hostConcurrency: 2, maxInFlight: 10, hostQueueLimit: 100, maxQueued: 100, onJobError: () => {} })
    const log: string[] = []
    const ends = new Map<string, () => void>()
    const releases = new Map<string, () => void>()
    const job = (name: string) => (release: () => void) =>
      new Promise<void>((resolve) => {
        log.push(`start ${name}`)
        releases.set(name, release)
        ends.set(name, () => {
          log.push(`end ${name}`)
          resolve()
        })
      })
    for (const name of ['a1', 'a2', 'a3', 'b1']) s.enqueue(1, name[0]!, job(name))
    await tick()
    expect(log).toEqual(['start a1', 'start b1'])
    releases.get('a1')!()
    releases.get('a1')!() // a second call changes nothing
    await tick()
    // a2 may start now, but the host bound (2) still counts a1 until it ends.
    expect(log).toEqual(['start a1', 'start b1'])
    ends.get('b1')!()
    await tick()
    expect(log).toEqual(['start a1', 'start b1', 'end b1', 'start a2'])
    // a2 holds the key (has not released it): a3 waits even when a1 ends and frees a slot.
    ends.get('a1')!()
    await tick()
    expect(log.at(-1)).toBe('end a1')
    expect(s.running).toBe(1)
    releases.get('a2')!()
    await tick()
    expect(log.at(-1)).toBe('start a3')
    ends.get('a3')!()
    ends.get('a2')!()
    await s.idle()
    expect(log.filter((l) => l.startsWith('start a'))).toEqual(['start a1', 'start a2', 'start a3'])
  })

  it('runs exclusive work only after every earlier job of the key has ended, released or not', async () => {
    const s = new KeyedScheduler({ hostConcurrency: 4, maxInFlight: 4, hostQueueLimit: 10, maxQueued: 10, onJobError: () => {} })
    const log: string[] = []
    let end!: () => void
    s.enqueue(1, 'x', (release) => {
      release()
      return new Promise<void>((r) => (end = r)).then(() => void log.push('event x committed'))
    })
    await tick()
    const admin = s.exclusive('x', async () => {
      log.push('admin x')
    })
    // An event queued after the admin job waits for it.
    s.enqueue(1, 'x', async () => void log.push('event x 2'))
    await tick()
    expect(log).toEqual([])
    end()
    await admin
    await s.idle()
    expect(log).toEqual(['event x committed', 'admin x', 'event x 2'])
  })

  it('starts a key’s jobs one after another when each releases the key at once, without nesting a start in a start', async () => {
    const n = 20_000
    const s = new KeyedScheduler({ hostConcurrency: n + 1, maxInFlight: n + 1, hostQueueLimit: n + 2, maxQueued: n + 2, onJobError: () => {} })
    const started: number[] = []
    let end!: () => void
    const ended = new Promise<void>((resolve) => (end = resolve))
    let releaseFirst!: () => void
    s.enqueue(1, 'k', (release) => {
      releaseFirst = release
      return ended
    })
    // Each job behind it lets go of the key before its first await: a start inside a start would recurse n deep.
    for (let i = 0; i < n; i++) {
      s.enqueue(1, 'k', (release) => {
        started.push(i)
        release()
        return ended
      })
    }
    expect(started).toHaveLength(0)
    releaseFirst()
    expect(started).toHaveLength(n)
    expect(started.every((v, i) => v === i)).toBe(true)
    end()
    await s.idle()
  })
})
