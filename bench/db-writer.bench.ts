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
import { existsSync } from 'node:fs'
import { parseArgs } from 'node:util'
import pino from 'pino'
import { Registry } from 'prom-client'
import { batchCommitStatement } from '../src/sequencer/batch-statement.js'
import { EventLog } from '../src/sequencer/event-log.js'
import { openStorage } from '../src/storage/db.js'
import { createPostgresDatabase } from '../test/helpers/db.js'
import { seedSyntheticAccounts, syntheticBatch } from './synthetic-batch.js'
import { mainThreadCpu } from './suite/machine.js'

const { values: args } = parseArgs({ options: { batches: { type: 'string' }, events: { type: 'string' }, frame: { type: 'string' } } })
const BATCHES = Number(args.batches ?? 400)
const EVENTS = Number(args.events ?? 70)
const FRAME = Number(args.frame ?? 1_630)
/** Batches per measured block, and blocks left out at the start. */
const BLOCK = 20
const WARM_UP = 2

const { url: tcpUrl, drop } = await createPostgresDatabase()
const SOCKET_DIR = '/var/run/postgresql'
const u = new URL(tcpUrl)
const url = existsSync(`${SOCKET_DIR}/.s.PGSQL.${u.port || 5432}`) ? `postgres://${u.username}@/${u.pathname.slice(1)}?host=${encodeURIComponent(SOCKET_DIR)}&port=${u.port || 5432}` : tcpUrl
try {
  const modes = ['inline', 'thread'] as const
  const storages = await Promise.all(modes.map((writer) => openStorage({ dataDir: '', databaseUrl: url, poolSize: 2, writer })))
  const accountIds = await seedSyntheticAccounts(storages[0]!)
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
        const w = syntheticBatch(seq, accountIds, EVENTS, FRAME)
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
