/**
 * Worker-thread entry for `WorkerPoolVerifier`: decodes a body, verifies it
 * with the given did:key, and posts back the trimmed outcome.
 */
import { parentPort } from 'node:worker_threads'
import { CborLimitError, decodeBounded } from '../atproto/cbor-scan.js'
import { isPlainMap } from '../atproto/frame.js'
import { parseDidKey, type PublicKey } from '../atproto/keys.js'
import { FRAME_BODY_LIMITS } from '../atproto/limits.js'
import { runVerification, type VerifyOutcome, type WorkerRequest, type WorkerResponse } from './verify-runner.js'

const port = parentPort
if (port === null) throw new Error('verify-worker must run in a worker thread')

// Parsed keys, bounded (insertion order evicts the oldest).
const keys = new Map<string, PublicKey>()
const MAX_KEYS = 10_000

function keyFor(didKey: string): PublicKey {
  let key = keys.get(didKey)
  if (key === undefined) {
    key = parseDidKey(didKey)
    if (keys.size >= MAX_KEYS) keys.delete(keys.keys().next().value as string)
    keys.set(didKey, key)
  }
  return key
}

function handle(req: WorkerRequest): VerifyOutcome {
  let body: unknown
  try {
    // The crawler already scanned this body; the worker still never decodes host bytes unbounded.
    body = decodeBounded(req.bodyBytes, FRAME_BODY_LIMITS, 'event body')
  } catch (err) {
    if (err instanceof CborLimitError) return { ok: false, reason: err.reason, message: err.message }
    return { ok: false, reason: 'bad-frame', message: `body does not decode: ${(err as Error).message}` }
  }
  if (!isPlainMap(body)) return { ok: false, reason: 'bad-frame', message: 'body is not a map' }
  let key: PublicKey
  try {
    key = keyFor(req.didKey)
  } catch (err) {
    return { ok: false, reason: 'bad-signature', message: `signing key does not parse: ${(err as Error).message}` }
  }
  return runVerification(req.kind, body, key, req.options)
}

port.on('message', (req: WorkerRequest) => {
  const res: WorkerResponse = { id: req.id, outcome: handle(req) }
  port.postMessage(res)
})

port.postMessage({ ready: true })
