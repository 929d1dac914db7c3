/**
 * CPU seconds by thread, so an operator can tell a relay whose main thread is the ceiling (it
 * paces ingest) from one short of cores: the main thread, the verify workers, the database
 * writer thread, and the rest of the process (V8's collector threads, libuv's pool). Linux only
 * (src/thread-cpu.ts); elsewhere the metric has no samples.
 */
import { Counter, type Registry } from 'prom-client'
import { ThreadGroupCpu, threadCpuSeconds } from '../thread-cpu.js'

export interface ThreadMetricsOptions {
  registry: Registry
  /** Kernel thread ids of the live verify workers. */
  verifyThreadIds: () => readonly number[]
  /** The database writer thread's, while it is up. */
  writerThreadId: () => number | undefined
}

export function registerThreadCpuMetrics(opts: ThreadMetricsOptions): void {
  const verify = new ThreadGroupCpu()
  const writer = new ThreadGroupCpu()
  let other = 0
  new Counter({
    name: 'relay_thread_cpu_seconds_total',
    help: 'CPU seconds used by the relay process, by thread: main (the event loop), verify (the verify workers), db-writer, other (V8 collector threads, libuv pool); Linux only',
    labelNames: ['thread'],
    registers: [opts.registry],
    collect() {
      const main = threadCpuSeconds(process.pid)
      if (main === undefined) return
      const writerId = opts.writerThreadId()
      const v = verify.seconds(opts.verifyThreadIds())
      const w = writer.seconds(writerId === undefined ? [] : [writerId])
      const usage = process.cpuUsage()
      // The remainder, never going back: the figures are read one after the other, not at one instant.
      other = Math.max(other, (usage.user + usage.system) / 1e6 - main - v - w)
      this.reset()
      this.inc({ thread: 'main' }, main)
      this.inc({ thread: 'verify' }, v)
      this.inc({ thread: 'db-writer' }, w)
      this.inc({ thread: 'other' }, other)
    },
  })
}
