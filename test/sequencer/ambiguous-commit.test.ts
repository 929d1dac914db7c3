/**
 * A batch commit that reports a failure after it had committed: the statement reached Postgres,
 * then the writer thread (or the connection) was lost before its answer came back. Running the
 * batch again would fail on the event rows' keys for good and stall every host; the retry asks
 * the high-water mark first, sees the batch is durable, and goes on with each event once. The
 * splitter's log, which writes through the same batch statement, likewise.
 */
import { sql } from 'kysely'
import pg from 'pg'
import pino from 'pino'
import { Registry } from 'prom-client'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Sequencer } from '../../src/sequencer/sequencer.js'
import { SplitterLog, SPLITTER_SEQ_KEY } from '../../src/splitter/splitter-log.js'
import { openStorage, type Storage } from '../../src/storage/db.js'
import { migrate } from '../../src/storage/migrate.js'
import { createPostgresDatabase } from '../helpers/db.js'
import { waitFor, waitUntil } from '../helpers/wait.js'
import { commitEvent, createAccounts, createHost, rev } from './helpers.js'

/**
 * Holds `relay_state`'s `key` row so the next batch statement waits inside Postgres, starts that
 * batch, kills the writer thread while it waits (its answer now has nowhere to go), then lets the
 * statement commit. Returns what `submit` returned.
 */
async function commitWithLostAnswer<T>(url: string, storage: Storage, key: string, submit: () => Promise<T>): Promise<T> {
  const blocker = new pg.Client({ connectionString: url })
  await blocker.connect()
  try {
    await blocker.query('begin')
    await blocker.query('select value from relay_state where key = $1 for update', [key])
    const submitted = submit()
    await waitUntil(async () => {
      const { rows } = await blocker.query(`select count(*)::int as n from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock'`)
      return rows[0].n > 0
    }, 'the batch statement to wait on the lock')
    const thread = storage.writer?.thread
    expect(thread).toBeDefined()
    await thread!.terminate()
    await blocker.query('commit')
    return await submitted
  } finally {
    await blocker.end()
  }
}

describe('a batch commit whose answer was lost after it committed', () => {
  let url: string
  let drop: () => Promise<void>
  let storage: Storage
  const lines: { msg: string; lastSeq?: number }[] = []
  const logger = pino({ level: 'warn' }, { write: (line: string) => void lines.push(JSON.parse(line)) })

  beforeAll(async () => {
    ;({ url, drop } = await createPostgresDatabase())
    storage = await openStorage({ databaseUrl: url, dataDir: '', poolSize: 4, logger, writer: 'thread' })
    await migrate(storage)
  }, 60_000)
  afterAll(async () => {
    await storage?.close()
    await drop?.()
  })

  it('is not run again: the retry finds it durable, and every event is stored and published once', async () => {
    const hostId = await createHost(storage, 'pds.example.com')
    const [account] = await createAccounts(storage, hostId, 1)
    const s = new Sequencer({ storage, initialSeq: 1, partitionSize: 1000, retentionIntervalMs: 0, maxBatchDelayMs: 1, logger, registry: new Registry() })
    const published: number[] = []
    s.onCommitted((batch) => published.push(...batch.map((e) => e.seq)))
    await s.start()
    try {
      const first = await s.submit(commitEvent(account!, 'did:plc:test0', rev(1)))

      expect(await commitWithLostAnswer(url, storage, 'seq', () => s.submit(commitEvent(account!, 'did:plc:test0', rev(2))))).toBe(first + 1)
      const stored = await sql<{ seq: number }>`select seq from event order by seq`.execute(storage.db)
      expect(stored.rows.map((r) => Number(r.seq))).toEqual([first, first + 1])
      await waitUntil(() => published.length >= 2, 'both events to be published')
      expect(published).toEqual([first, first + 1])
      const recovered = await waitFor('the recovery log line', () => lines.find((l) => l.msg.startsWith('sequencer commit had succeeded although it reported a failure')))
      expect(recovered.lastSeq).toBe(first + 1)
    } finally {
      await s.stop()
    }
  })

  it("the splitter's log: not written again, each frame stored and published once", async () => {
    // The writer thread of the first test is back after its restart wait.
    await waitUntil(() => storage.writer?.thread !== undefined, 'the writer thread to be back', 15_000)
    await sql`delete from event`.execute(storage.db)
    const log = new SplitterLog({ storage, partitionSize: 1000, retentionIntervalMs: 0, maxBatchDelayMs: 1, logger, registry: new Registry() })
    const published: number[] = []
    log.onCommitted((batch) => published.push(...batch.map((e) => e.seq)))
    await log.start()
    try {
      const frame = (seq: number) => ({ seq, t: '#commit', code: 1, did: 'did:plc:test0', frame: new Uint8Array([seq, 1, 2, 3]) })
      log.append(frame(1))
      await waitUntil(() => published.length === 1, 'the first frame to be committed')
      await commitWithLostAnswer(url, storage, SPLITTER_SEQ_KEY, async () => {
        log.append(frame(2))
      })
      await waitUntil(() => published.length >= 2, 'the second frame to be published')
      expect(published).toEqual([1, 2])
      const stored = await sql<{ seq: number }>`select seq from event order by seq`.execute(storage.db)
      expect(stored.rows.map((r) => Number(r.seq))).toEqual([1, 2])
      await waitFor('the recovery log line', () => lines.find((l) => l.msg.startsWith('splitter log write had succeeded although it reported a failure')))
    } finally {
      await log.stop()
    }
  })
})
