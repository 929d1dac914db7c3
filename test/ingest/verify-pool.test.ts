/**
 * The batched worker pool (src/ingest/verify-pool.ts) against inline verification: the same
 * outcome for every request of a large burst (valid commits, forged signatures and a body that
 * does not decode, interleaved), in far fewer messages than requests; a worker that dies
 * mid-batch fails only its outstanding requests, and the pool goes on with a new worker.
 */
import pino from 'pino'
import { afterEach, describe, expect, it } from 'vitest'
import { decodeFrame, type MessageFrame } from '../../src/atproto/frame.js'
import { parseDidKey } from '../../src/atproto/keys.js'
import { InlineVerifier, type VerifyOutcome, type VerifyRequest } from '../../src/ingest/verify-runner.js'
import { WorkerPoolVerifier } from '../../src/ingest/verify-pool.js'
import { Registry } from 'prom-client'
import { registerThreadCpuMetrics } from '../../src/api/thread-metrics.js'
import { threadCpuSeconds } from '../../src/thread-cpu.js'
import { encodeEventFrame } from '../helpers/frames.js'
import { generateKeypair, TestAccount } from '../helpers/repo-builder.js'

const silent = pino({ level: 'silent' })
let pool: WorkerPoolVerifier | undefined
afterEach(async () => {
  await pool?.close()
  pool = undefined
})

async function requests(): Promise<VerifyRequest[]> {
  const out: VerifyRequest[] = []
  const forger = generateKeypair('secp256k1')
  for (let a = 0; a < 6; a++) {
    const acct = await TestAccount.create({ keyType: a % 3 === 0 ? 'p256' : 'secp256k1' })
    await acct.genesis()
    const key = parseDidKey(acct.signingKey.did())
    for (let i = 0; i < 50; i++) {
      const forged = i % 10 === 7
      const evt = forged
        ? await acct.commit({ action: 'create', collection: 'app.bsky.feed.post', record: { text: `f${i}`, createdAt: new Date().toISOString() } }, { signWith: forger, apply: false })
        : await acct.createRecord('app.bsky.feed.post', { $type: 'app.bsky.feed.post', text: `p${i}`, createdAt: new Date().toISOString() })
      const frame = decodeFrame(encodeEventFrame(evt, out.length + 1)) as MessageFrame
      out.push({ kind: 'commit', bodyBytes: frame.bodyBytes, key, options: { strict: true, hasStoredHead: true } })
    }
  }
  // A body that is not CBOR at all: the worker answers bad-frame, never throws.
  out.splice(100, 0, { ...out[0]!, bodyBytes: new Uint8Array([0xff, 0x00, 0x13]) })
  return out
}

function summary(o: VerifyOutcome): string {
  return o.ok ? `ok ${o.rev} ${Buffer.from(o.dataCid).toString('hex')}` : `drop ${o.reason}`
}

describe('WorkerPoolVerifier', () => {
  it('gives every request of a burst the inline outcome, in batches', async () => {
    const reqs = await requests()
    const inline = new InlineVerifier()
    const expected = await Promise.all(reqs.map((r, i) => (i === 100 ? Promise.resolve<VerifyOutcome>({ ok: false, reason: 'bad-frame', message: '' }) : inline.verify(r))))
    pool = new WorkerPoolVerifier(2, silent)
    await pool.ready()
    const got = await Promise.all(reqs.map((r) => pool!.verify(r)))
    expect(got.map(summary)).toEqual(expected.map(summary))
    expect(got.filter((o) => !o.ok && o.reason === 'bad-signature')).toHaveLength(30)
    // 301 requests made in one turn: a handful of messages (at most 256 requests each), not 301.
    expect(pool.batchesSent).toBeGreaterThanOrEqual(2)
    expect(pool.batchesSent).toBeLessThanOrEqual(4)
  }, 120_000)

  it('fails only the outstanding requests of a worker that dies, then verifies with a new one', async () => {
    const reqs = (await requests()).filter((_, i) => i !== 100)
    pool = new WorkerPoolVerifier(1, silent)
    await pool.ready()
    const inFlight = reqs.slice(0, 40).map((r) => pool!.verify(r))
    await pool.workerThreads[0]!.terminate()
    const settled = await Promise.allSettled(inFlight)
    expect(settled.every((s) => s.status === 'rejected')).toBe(true)
    // The replacement worker takes new work.
    const after = await pool.verify(reqs[45]!)
    expect(after.ok).toBe(true)
  }, 120_000)

  it('tells the main thread its workers’ thread ids, whose CPU relay_thread_cpu_seconds_total reports', async () => {
    pool = new WorkerPoolVerifier(1, silent)
    await pool.ready()
    const [tid] = pool.threadIds
    expect(pool.threadIds).toHaveLength(1)
    expect(tid).not.toBe(process.pid)
    const registry = new Registry()
    registerThreadCpuMetrics({ registry, verifyThreadIds: () => pool!.threadIds, writerThreadId: () => undefined })
    const cpu = async () => Object.fromEntries((await registry.getSingleMetric('relay_thread_cpu_seconds_total')!.get()).values.map((v) => [v.labels.thread, v.value]))
    const before = threadCpuSeconds(tid!)!
    const first = await cpu()
    // The verifying happens on the worker: its thread's CPU is what grows.
    const reqs = await requests()
    await Promise.all(reqs.map((r) => pool!.verify(r)))
    const after = threadCpuSeconds(tid!)!
    expect(after).toBeGreaterThan(before)
    const second = await cpu()
    expect(second.verify).toBeGreaterThanOrEqual(after)
    expect(second.verify).toBeGreaterThan(first.verify!)
    expect(second.main).toBeGreaterThan(0)
    expect(second['db-writer']).toBe(0)
    expect(second.other).toBeGreaterThanOrEqual(first.other!)
  }, 120_000)
})
