/**
 * Per-thread CPU from /proc (src/thread-cpu.ts), the source of relay_thread_cpu_seconds_total:
 * a thread's own id, its CPU rising while it works, and a group's figure that keeps what an
 * ended thread used. Linux only, as the code is; the suite runs on Linux.
 */
import { Worker } from 'node:worker_threads'
import { describe, expect, it } from 'vitest'
import { currentThreadId, ThreadGroupCpu, threadCpuSeconds } from '../../src/thread-cpu.js'
import { waitUntil } from '../helpers/wait.js'

// A worker that reports its kernel thread id, spins on command, and ends on command.
const WORKER = `
const { parentPort } = require('node:worker_threads')
const tid = Number(require('node:fs').readlinkSync('/proc/thread-self').split('/').pop())
parentPort.on('message', (m) => {
  if (m === 'spin') { const end = Date.now() + 60; while (Date.now() < end) {} parentPort.postMessage('spun') }
  else if (m === 'end') process.exit(0)
})
parentPort.postMessage(tid)
`

function next(worker: Worker): Promise<unknown> {
  return new Promise((resolve) => worker.once('message', resolve))
}

describe('thread CPU', () => {
  it('knows the main thread by the pid and reads its CPU', () => {
    expect(currentThreadId()).toBe(process.pid)
    expect(threadCpuSeconds(process.pid)).toBeGreaterThan(0)
  })

  it('reads a worker’s CPU while it works, and a group keeps it after the thread has ended', async () => {
    const worker = new Worker(WORKER, { eval: true })
    const tid = (await next(worker)) as number
    expect(tid).not.toBe(process.pid)
    const group = new ThreadGroupCpu()
    const before = group.seconds([tid])
    worker.postMessage('spin')
    expect(await next(worker)).toBe('spun')
    const after = group.seconds([tid])
    expect(after).toBeGreaterThan(before)
    const exited = new Promise((resolve) => worker.once('exit', resolve))
    worker.postMessage('end')
    await exited
    await waitUntil(() => threadCpuSeconds(tid) === undefined, 'the ended thread gone from /proc')
    expect(group.seconds([])).toBe(after)
  })
})
