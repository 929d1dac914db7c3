import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { Registry } from 'prom-client'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { decodeFrame } from '../../src/atproto/frame.js'
import { Sequencer, SEQ_STATE_KEY } from '../../src/sequencer/sequencer.js'
import { createTestDatabase, type TestDatabase } from '../helpers/db.js'
import { commitEvent, createAccounts, createHost, rev, silentLogger } from './helpers.js'

const CHILD = fileURLToPath(new URL('./crash-child.ts', import.meta.url))

interface RunResult {
  startedAt: number
  acks: Map<number, number> // relay seq -> upstream seq
}

/** Runs the child until it has acknowledged `minAcks` events (after a random extra delay), then SIGKILLs it. */
function runAndKill(url: string, hostId: number, accounts: number[], firstUpstream: number, minAcks: number): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', CHILD, url, String(hostId), accounts.join(','), String(firstUpstream)], {
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    const acks = new Map<number, number>()
    let startedAt = -1
    let buf = ''
    let stderr = ''
    let killScheduled = false
    const timeout = setTimeout(() => {
      child.kill('SIGKILL')
      reject(new Error(`child too slow: ${acks.size} acks; stderr: ${stderr}`))
    }, 120_000)
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()))
    child.stdout.on('data', (d: Buffer) => {
      buf += d.toString()
      let nl: number
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl)
        buf = buf.slice(nl + 1)
        const [word, a, b] = line.split(' ')
        if (word === 'started') startedAt = Number(a)
        else if (word === 'ack') acks.set(Number(a), Number(b))
      }
      if (!killScheduled && acks.size >= minAcks) {
        killScheduled = true
        // A random moment: most likely in the middle of a batch transaction.
        setTimeout(() => child.kill('SIGKILL'), Math.floor(Math.random() * 20))
      }
    })
    child.on('exit', (code, signal) => {
      clearTimeout(timeout)
      if (signal !== 'SIGKILL') reject(new Error(`child exited ${code} ${signal}: ${stderr}`))
      else resolve({ startedAt, acks })
    })
  })
}

describe('crash consistency (postgres, SIGKILL)', () => {
  let t: TestDatabase
  let hostId: number
  let accounts: number[]

  beforeAll(async () => {
    t = await createTestDatabase('postgres')
    hostId = await createHost(t.storage, 'crash.example.com')
    accounts = await createAccounts(t.storage, hostId, 7, 'did:plc:crash')
  }, 120_000)
  afterAll(async () => {
    await t?.cleanup()
  })

  it('loses no acknowledged event, reuses no seq, and keeps heads and cursors consistent across kills', async () => {
    const db = t.storage.db
    const allAcks = new Map<number, number>()
    let firstUpstream = 1
    for (let cycle = 0; cycle < 2; cycle++) {
      const before = await db.selectFrom('event').select(db.fn.max('seq').as('max')).executeTakeFirst()
      const run = await runAndKill(t.url!, hostId, accounts, firstUpstream, 1500)
      // It continued above everything committed before.
      expect(run.startedAt).toBe(Number(before?.max ?? 0))
      expect(Math.min(...run.acks.keys())).toBe(run.startedAt + 1)
      for (const [seq, up] of run.acks) allAcks.set(seq, up)
      const cursor = (await db.selectFrom('host').select('cursor').where('id', '=', hostId).executeTakeFirstOrThrow()).cursor
      // The next run resumes upstream after the durable cursor, as a crawler would.
      firstUpstream = cursor + 1

      const rows = await db.selectFrom('event').select(['seq', 'account_id', 'frame', 'commit_cid']).orderBy('seq').execute()
      const stored = new Map(rows.map((r) => [r.seq, r]))
      // Every acknowledged event is present, with the frame the producer was told about.
      for (const [seq, up] of allAcks) {
        const row = stored.get(seq)
        expect(row, `acked seq ${seq}`).toBeDefined()
        const f = decodeFrame(row!.frame)
        expect(f.op === 1 && f.body.seq === seq && f.body.rev === rev(up)).toBe(true)
      }
      // Seqs are contiguous from 1: nothing skipped, nothing reused (the primary key forbids duplicates).
      expect(rows.map((r) => r.seq)).toEqual(rows.map((_, i) => i + 1))
      // The high-water mark is the newest committed seq.
      const hw = await db.selectFrom('relay_state').select('value').where('key', '=', SEQ_STATE_KEY).executeTakeFirst()
      expect(hw?.value).toBe(rows.at(-1)!.seq)
      // Heads agree with each account's newest logged commit.
      const heads = await db.selectFrom('account_head').selectAll().execute()
      expect(heads.length).toBe(accounts.length)
      for (const h of heads) {
        const newest = rows.filter((r) => r.account_id === h.account_id).at(-1)!
        expect(Buffer.from(h.commit_cid).equals(Buffer.from(newest.commit_cid!))).toBe(true)
        const f = decodeFrame(newest.frame)
        expect(f.op === 1 && f.body.rev === h.rev).toBe(true)
      }
      // The host cursor covers only upstream seqs that are all committed.
      const committedUpstream = new Set(
        rows.map((r) => {
          const f = decodeFrame(r.frame)
          return f.op === 1 ? (f.body.rev as string) : ''
        }),
      )
      for (let n = 1; n <= cursor; n++) expect(committedUpstream.has(rev(n)), `upstream ${n} <= cursor ${cursor}`).toBe(true)
      expect(cursor).toBeGreaterThan(0)
    }

    // A restart in this process continues above the last committed seq.
    const s = new Sequencer({ storage: t.storage, initialSeq: 1, partitionSize: 500, retentionIntervalMs: 0, logger: silentLogger, registry: new Registry() })
    await s.start()
    const max = Math.max(...(await db.selectFrom('event').select('seq').execute()).map((r) => r.seq))
    expect(s.currentSeq()).toBe(max)
    expect(await s.submit(commitEvent(accounts[0]!, 'did:plc:crash0', rev(10_000_000)))).toBe(max + 1)
    await s.stop()
  }, 300_000)
})
