/**
 * The batch commit on the main thread (RELAY_DB_WRITER=inline) against the writer thread
 * (thread), A against B in one run: the relay's batch statement (src/sequencer/batch-statement.ts)
 * built here and run through `Storage.executeRepeated` of two storages on one fresh Postgres
 * database, alternated batch by batch so drift hits both. Batches of 70 events of 1.6 KB (the
 * corpus's mean frame and the relay's mean batch under full ingest) with their heads and 20 host
 * cursors, over the Unix socket when there is one.
 *
 * Per event: this process's main-thread CPU (/proc/self/task/<pid>/schedstat: what the relay's
 * event loop pays), the whole process's CPU (every thread), and wall time per batch.
 *
 *   npx tsx bench/db-writer.bench.ts [--batches N] [--events N] [--frame BYTES]
 */
import { randomBytes } from 'node:crypto'
import { existsSync } from 'node:fs'
import { parseArgs } from 'node:util'
import pino from 'pino'
import { Registry } from 'prom-client'
import { batchCommitStatement, type BatchWrites } from '../src/sequencer/batch-statement.js'
import { EventLog, type EventRow } from '../src/sequencer/event-log.js'
import { openStorage, type Storage } from '../src/storage/db.js'
import { migrate } from '../src/storage/migrate.js'
import type { AccountHead } from '../src/storage/types.js'
import { createPostgresDatabase } from '../test/helpers/db.js'
import { mainThreadCpu } from './suite/machine.js'

const { values: args } = parseArgs({ options: { batches: { type: 'string' }, events: { type: 'string' }, frame: { type: 'string' } } })
const BATCHES = Number(args.batches ?? 400)
const EVENTS = Number(args.events ?? 70)
const FRAME = Number(args.frame ?? 1_630)
const ACCOUNTS = 2_000
const HOSTS = 20
/** Batches per measured block, and blocks left out at the start. */
const BLOCK = 20
const WARM_UP = 2

function batch(seq: number, accountIds: number[]): BatchWrites {
  const events: EventRow[] = []
  const heads = new Map<number, AccountHead>()
  for (let i = 0; i < EVENTS; i++) {
    const accountId = accountIds[(seq + i) % accountIds.length]!
    events.push({ seq: seq + i, accountId, kind: 1, frame: randomBytes(FRAME), commitCid: randomBytes(36), timeUs: 1_700_000_000_000_000 + seq + i })
    heads.set(accountId, { rev: '3l' + String(seq + i).padStart(11, '2'), commitCid: randomBytes(36), dataCid: randomBytes(36) })
  }
  const cursors = new Map<number, number>()
  for (let h = 1; h <= HOSTS; h++) cursors.set(h, seq + h)
  return { events, heads, cursors, highWater: { key: 'seq', seq: seq + EVENTS - 1 } }
}

async function seed(storage: Storage): Promise<number[]> {
  await migrate(storage)
  for (let h = 1; h <= HOSTS; h++) await storage.db.insertInto('host').values({ hostname: `h${h}.test`, account_limit: 1e9 }).execute()
  const rows = await storage.db
    .insertInto('account')
    .values(Array.from({ length: ACCOUNTS }, (_, i) => ({ did: `did:plc:bench${i}`, host_id: 1 + (i % HOSTS) })))
    .returning('id')
    .execute()
  return rows.map((r) => r.id)
}

const { url: tcpUrl, drop } = await createPostgresDatabase()
const SOCKET_DIR = '/var/run/postgresql'
const u = new URL(tcpUrl)
const url = existsSync(`${SOCKET_DIR}/.s.PGSQL.${u.port || 5432}`) ? `postgres://${u.username}@/${u.pathname.slice(1)}?host=${encodeURIComponent(SOCKET_DIR)}&port=${u.port || 5432}` : tcpUrl
try {
  const modes = ['inline', 'thread'] as const
  const storages = await Promise.all(modes.map((writer) => openStorage({ dataDir: '', databaseUrl: url, poolSize: 2, writer })))
  const accountIds = await seed(storages[0]!)
  const log = new EventLog({ storage: storages[0]!, currentSeq: () => 0, logger: pino({ level: 'silent' }), registry: new Registry(), retentionIntervalMs: 0 })
  await log.ensurePartitions(1, (BATCHES * 2 + 10) * EVENTS)
  const totals = modes.map(() => ({ main: 0, process: 0, wall: 0 }))
  let seq = 1
  // Blocks of batches per mode, alternated: the main thread's schedstat is only brought up to date at
  // scheduler ticks (~4 ms), so a single batch is too short to measure on its own.
  for (let block = 0; block < BATCHES / BLOCK; block++) {
    for (let k = 0; k < modes.length; k++) {
      const m = block % 2 === 0 ? k : modes.length - 1 - k
      const writes = Array.from({ length: BLOCK }, () => {
        const w = batch(seq, accountIds)
        seq += EVENTS
        return w
      })
      const m0 = mainThreadCpu()
      const c0 = process.cpuUsage()
      const t0 = performance.now()
      for (const w of writes) await storages[m]!.executeRepeated(batchCommitStatement(w)!)
      const t1 = performance.now()
      const c1 = process.cpuUsage(c0)
      const m1 = mainThreadCpu()
      if (block < WARM_UP) continue
      totals[m]!.main += m1 - m0
      totals[m]!.process += (c1.user + c1.system) / 1e6
      totals[m]!.wall += (t1 - t0) / 1000
    }
  }
  const n = (Math.floor(BATCHES / BLOCK) - WARM_UP) * BLOCK * EVENTS
  console.log(`${n / EVENTS} batches of ${EVENTS} events (${FRAME} B frames) per mode, ${url === tcpUrl ? 'TCP' : 'Unix socket'}; statement built on the main thread in both`)
  console.log('| RELAY_DB_WRITER | main thread CPU µs/event | process CPU µs/event (every thread) | wall µs/event |')
  console.log('|---|---:|---:|---:|')
  modes.forEach((mode, i) => {
    const t = totals[i]!
    console.log(`| ${mode} | ${((t.main / n) * 1e6).toFixed(1)} | ${((t.process / n) * 1e6).toFixed(1)} | ${((t.wall / n) * 1e6).toFixed(1)} |`)
  })
  const [a, b] = totals as [(typeof totals)[0], (typeof totals)[0]]
  console.log(`thread ÷ inline: main thread ${(b.main / a.main).toFixed(2)}, process ${(b.process / a.process).toFixed(2)}, wall ${(b.wall / a.wall).toFixed(2)}`)
  for (const s of storages) await s.close()
} finally {
  await drop()
}
