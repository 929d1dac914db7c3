/**
 * Worker-thread entry for `StatementWriter` (statement-writer.ts): owns a
 * small `pg` pool of its own and runs the repeated statements it is sent as
 * named statements (prepared-runner.ts), answering each with its outcome.
 */
import { parentPort, workerData, type MessagePort } from 'node:worker_threads'
import pg from 'pg'
import { currentThreadId } from '../thread-cpu.js'
import { preparedRunner } from './prepared-runner.js'
import { toWriterError, type WriterInit, type WriterReply, type WriterRequest } from './statement-writer-protocol.js'

if (parentPort === null) throw new Error('statement-writer-worker must run in a worker thread')
const port: MessagePort = parentPort
const init = workerData as WriterInit

const post = (reply: WriterReply) => port.postMessage(reply)
const pool = new pg.Pool({ connectionString: init.url, max: init.poolSize, connectionTimeoutMillis: 5_000 })
pool.on('error', (err) => post({ poolError: toWriterError(err) }))
const run = preparedRunner(pool, (err) => post({ preparedOff: toWriterError(err) }))

port.on('message', (msg: WriterRequest | 'close') => {
  if (msg === 'close') {
    void pool
      .end()
      .catch((err: unknown) => post({ poolError: toWriterError(err) }))
      .finally(() => port.close())
    return
  }
  const values = msg.values
  for (const [index, start, end] of msg.buffers) values[index] = Buffer.from(msg.bytes, start, end - start)
  run(msg.text, values).then(
    () => post({ id: msg.id }),
    (err: unknown) => post({ id: msg.id, error: toWriterError(err) }),
  )
})

// Its kernel thread id: the main thread reads this thread's CPU (relay_thread_cpu_seconds_total).
post({ ready: true, tid: currentThreadId() })
