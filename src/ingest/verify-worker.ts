/**
 * Worker-thread entry for `WorkerPoolVerifier` (verify-pool.ts): takes a batch
 * of bodies, decodes each one (bounded), verifies it with the given did:key,
 * and posts back the trimmed outcomes, a few ms of work at a time.
 */
import { parentPort, type MessagePort } from 'node:worker_threads'
import { currentThreadId } from '../thread-cpu.js'
import { parseDidKey, type PublicKey } from '../atproto/keys.js'
import type { VerifyOptions } from '../atproto/verify.js'
import type { WorkerAnswers, WorkerBatch } from './verify-pool.js'
import { verifyBody } from './verify-body.js'
import type { VerifyKind, VerifyOutcome } from './verify-runner.js'

if (parentPort === null) throw new Error('verify-worker must run in a worker thread')
const port: MessagePort = parentPort

// Parsed keys, bounded (insertion order evicts the oldest).
const keys = new Map<string, PublicKey>()
const MAX_KEYS = 10_000
/** Answers go back at least this often while a batch is being worked through. */
const ANSWER_EVERY_MS = 4

function keyFor(didKey: string): PublicKey {
  let key = keys.get(didKey)
  if (key === undefined) {
    key = parseDidKey(didKey)
    if (keys.size >= MAX_KEYS) keys.delete(keys.keys().next().value as string)
    keys.set(didKey, key)
  }
  return key
}

function handle(kind: VerifyKind, bodyBytes: Uint8Array, didKey: string, options: VerifyOptions): VerifyOutcome {
  let key: PublicKey
  try {
    key = keyFor(didKey)
  } catch (err) {
    return { ok: false, reason: 'bad-signature', message: `signing key does not parse: ${(err as Error).message}` }
  }
  return verifyBody(kind, bodyBytes, key, options)
}

/**
 * Posts answers with every CID of the message in one transferred buffer (the
 * outcomes hold views into it): cloned one by one, each CID would become an
 * ArrayBuffer of its own on the main thread, three per event, for its GC to sweep.
 */
function post(answers: WorkerAnswers): void {
  let size = 0
  for (const o of answers.outcomes) if (o.ok) size += o.commitCid.length + o.dataCid.length + (o.prevData?.length ?? 0)
  const shared = new Uint8Array(size)
  let at = 0
  const place = (bytes: Uint8Array): Uint8Array => {
    shared.set(bytes, at)
    at += bytes.length
    return shared.subarray(at - bytes.length, at)
  }
  for (const o of answers.outcomes) {
    if (!o.ok) continue
    o.commitCid = place(o.commitCid)
    o.dataCid = place(o.dataCid)
    if (o.prevData !== null) o.prevData = place(o.prevData)
  }
  port.postMessage(answers, [shared.buffer])
}

port.on('message', (batch: WorkerBatch) => {
  const bytes = new Uint8Array(batch.bytes)
  let answers: WorkerAnswers = { ids: [], outcomes: [] }
  let lastPost = performance.now()
  let start = 0
  for (let i = 0; i < batch.ids.length; i++) {
    const end = batch.ends[i]!
    answers.ids.push(batch.ids[i]!)
    answers.outcomes.push(handle(batch.kinds[i]!, bytes.subarray(start, end), batch.didKeys[i]!, batch.options[i]!))
    start = end
    const now = performance.now()
    if (now - lastPost >= ANSWER_EVERY_MS && i + 1 < batch.ids.length) {
      post(answers)
      answers = { ids: [], outcomes: [] }
      lastPost = now
    }
  }
  if (answers.ids.length > 0) post(answers)
})

// Its kernel thread id: the main thread reads this thread's CPU (relay_thread_cpu_seconds_total).
port.postMessage({ ready: true, tid: currentThreadId() })
