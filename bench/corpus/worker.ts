/** Worker thread: generates the hosts it is given and reports each one back. */
import { parentPort, workerData } from 'node:worker_threads'
import { generateHost } from './generate-host.js'
import type { CorpusParams } from './params.js'

interface Job {
  params: CorpusParams
  hosts: number[]
  dir: string
  rotationKeyHex: string
}

const job = workerData as Job
if (!parentPort) throw new Error('corpus worker must run as a worker thread')
const port = parentPort
for (const host of job.hosts) {
  const result = await generateHost(job.params, host, job.dir, job.rotationKeyHex, (p) => port.postMessage({ type: 'progress', progress: p }))
  port.postMessage({ type: 'host', host: result })
}
port.postMessage({ type: 'done' })
