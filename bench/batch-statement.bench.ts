/**
 * The batch commit statement, A against B in one run: the relay's (one binary array parameter
 * per column, src/sequencer/batch-statement.ts) against the earlier form (one `values` row of six
 * parameters per event, bench/baseline/values-batch-statement.ts). Batches of 200 events of
 * 1.6 KB (the corpus's mean frame) with their heads and 20 host cursors, alternated, into a fresh
 * Postgres database over TCP and over the Unix socket.
 *
 * Per batch: client CPU of this process (building the statement, pg's serialising and socket
 * writes: what the relay's main thread pays), the Postgres backend's CPU (/proc/<pid>/stat of the
 * connection's backend), and wall time.
 *
 *   npx tsx bench/batch-statement.bench.ts [--batches N] [--events N] [--frame BYTES]
 */
import { existsSync, readFileSync } from 'node:fs'
import { parseArgs } from 'node:util'
import { Kysely, PostgresDialect, type CompiledQuery } from 'kysely'
import pino from 'pino'
import { Registry } from 'prom-client'
import { batchCommitStatement, type BatchWrites } from '../src/sequencer/batch-statement.js'
import { EventLog } from '../src/sequencer/event-log.js'
import { openStorage } from '../src/storage/db.js'
import { createPostgresDatabase } from '../test/helpers/db.js'
import { seedSyntheticAccounts, syntheticBatch } from './synthetic-batch.js'
import { valuesBatchCommitStatement } from './baseline/values-batch-statement.js'

const { values: args } = parseArgs({ options: { batches: { type: 'string' }, events: { type: 'string' }, frame: { type: 'string' } } })
const BATCHES = Number(args.batches ?? 150)
const EVENTS = Number(args.events ?? 200)
const FRAME = Number(args.frame ?? 1_630)

const TICK_S = 0.01 // USER_HZ is 100 on Linux

function backendCpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ')
  return (Number(fields[11]) + Number(fields[12])) * TICK_S
}

interface Form {
  name: string
  build: (w: BatchWrites) => CompiledQuery | undefined
}

const FORMS: Form[] = [
  { name: 'values (6 params per event)', build: valuesBatchCommitStatement },
  { name: 'binary arrays (1 param per column)', build: batchCommitStatement },
]

async function measure(url: string, label: string): Promise<void> {
  const storage = await openStorage({ dataDir: '', databaseUrl: url, poolSize: 1 })
  const accountIds = await seedSyntheticAccounts(storage)
  const log = new EventLog({ storage, currentSeq: () => 0, logger: pino({ level: 'silent' }), registry: new Registry(), retentionIntervalMs: 0 })
  await log.ensurePartitions(1, (BATCHES * 2 + 10) * EVENTS)
  // One connection (pool of 1), so pg_backend_pid() names the backend that runs every batch.
  const db = storage.db as Kysely<unknown>
  const { rows } = await db.executeQuery<{ pid: number }>({ sql: 'select pg_backend_pid() as pid', parameters: [], query: { kind: 'RawNode' } } as unknown as CompiledQuery)
  const backend = rows[0]!.pid
  const totals = FORMS.map(() => ({ client: 0, backend: 0, wall: 0 }))
  let seq = 1
  for (let round = 0; round < BATCHES; round++) {
    for (let f = 0; f < FORMS.length; f++) {
      // Alternate which form goes first, so drift affects both alike.
      const form = round % 2 === 0 ? f : FORMS.length - 1 - f
      const w = syntheticBatch(seq, accountIds, EVENTS, FRAME)
      seq += EVENTS
      const c0 = process.cpuUsage()
      const b0 = backendCpuSeconds(backend)
      const t0 = performance.now()
      await storage.db.executeQuery(FORMS[form]!.build(w)!)
      const t1 = performance.now()
      const c1 = process.cpuUsage(c0)
      if (round < 5) continue // warm-up
      totals[form]!.client += (c1.user + c1.system) / 1e6
      totals[form]!.backend += backendCpuSeconds(backend) - b0
      totals[form]!.wall += (t1 - t0) / 1000
    }
  }
  const n = (BATCHES - 5) * EVENTS
  console.log(`\n${label}: ${BATCHES - 5} batches of ${EVENTS} events (${FRAME} B frames) per form`)
  console.log('| form | client CPU µs/event | Postgres backend CPU µs/event | wall µs/event |')
  console.log('|---|---:|---:|---:|')
  FORMS.forEach((form, i) => {
    const t = totals[i]!
    console.log(`| ${form.name} | ${((t.client / n) * 1e6).toFixed(1)} | ${((t.backend / n) * 1e6).toFixed(1)} | ${((t.wall / n) * 1e6).toFixed(1)} |`)
  })
  const [a, b] = totals as [(typeof totals)[0], (typeof totals)[0]]
  console.log(`arrays ÷ values: client ${(b.client / a.client).toFixed(2)}, backend ${(b.backend / a.backend).toFixed(2)}, wall ${(b.wall / a.wall).toFixed(2)}`)
  await storage.close()
}

const { url, drop } = await createPostgresDatabase()
try {
  await measure(url, 'TCP (127.0.0.1)')
} finally {
  await drop()
}
const SOCKET_DIR = '/var/run/postgresql'
if (existsSync(`${SOCKET_DIR}/.s.PGSQL.5432`)) {
  const second = await createPostgresDatabase()
  try {
    const u = new URL(second.url)
    await measure(`postgres://${u.username}@/${u.pathname.slice(1)}?host=${encodeURIComponent(SOCKET_DIR)}`, `Unix socket (${SOCKET_DIR})`)
  } finally {
    await second.drop()
  }
}

