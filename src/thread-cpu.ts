/**
 * CPU time of single threads of this process, from Linux's /proc (Node 20 has no per-thread CPU
 * API: `process.cpuUsage()` is the whole process in every thread). A worker thread learns its own
 * kernel thread id and tells the main thread, which reads each thread it knows. Everything here
 * answers undefined where /proc is not Linux's.
 */
import { readFileSync, readlinkSync } from 'node:fs'

/** /proc's utime and stime are in USER_HZ, 100 on Linux. */
const USER_HZ = 100

/** The calling thread's kernel thread id (the main thread's is the pid), or undefined. */
export function currentThreadId(): number | undefined {
  try {
    const tid = Number(readlinkSync('/proc/thread-self').split('/').pop())
    return Number.isSafeInteger(tid) && tid > 0 ? tid : undefined
  } catch {
    return undefined // not Linux: no per-thread figures
  }
}

/** CPU seconds thread `tid` of this process has used so far, or undefined (it has ended, or not Linux). */
export function threadCpuSeconds(tid: number): number | undefined {
  const task = `/proc/self/task/${tid}`
  try {
    const ns = Number(readFileSync(`${task}/schedstat`, 'utf8').split(' ')[0])
    if (Number.isFinite(ns)) return ns / 1e9
  } catch {
    // no schedstat (a kernel without CONFIG_SCHED_INFO) or no such thread: the ticks below
  }
  try {
    const stat = readFileSync(`${task}/stat`, 'utf8')
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return (Number(fields[11]) + Number(fields[12])) / USER_HZ
  } catch {
    return undefined
  }
}

/**
 * The CPU seconds of a group of threads (the verify workers, the writer thread), kept monotonic
 * across thread deaths: a thread that has ended keeps the last figure read for it.
 */
export class ThreadGroupCpu {
  private readonly last = new Map<number, number>()

  /** Sum over every thread of the group seen so far; `live` are the ids of those running now. */
  seconds(live: readonly number[]): number {
    for (const tid of live) {
      const s = threadCpuSeconds(tid)
      if (s !== undefined) this.last.set(tid, s)
    }
    let sum = 0
    for (const s of this.last.values()) sum += s
    return sum
  }
}
