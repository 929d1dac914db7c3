/**
 * Database and disk size for Prometheus, so an operator is warned before the
 * event log fills a disk: the database's size (pg_database_size, on PostgreSQL
 * and PGlite alike) and the free and total bytes of the filesystem holding
 * RELAY_DATA_DIR (the embedded database; with PostgreSQL, only the admin
 * password lives there). Both are read at scrape time, at most once a minute.
 * With the database writer thread, how many statements had to run on the main
 * thread while it was not up.
 */
import { statfs } from 'node:fs/promises'
import { sql } from 'kysely'
import type { Logger } from 'pino'
import { Counter, Gauge, type Registry } from 'prom-client'
import type { Storage } from '../storage/db.js'

const MIN_INTERVAL_MS = 60_000

export function registerStorageMetrics(opts: { registry: Registry; storage: Storage; dataDir: string; logger: Logger }): void {
  const registers = [opts.registry]
  let sizeAt = 0
  let size: number | undefined
  new Gauge({
    name: 'relay_database_size_bytes',
    help: 'Size of the relay database on disk (pg_database_size), refreshed at most once a minute',
    registers,
    async collect() {
      if (Date.now() - sizeAt >= MIN_INTERVAL_MS) {
        sizeAt = Date.now()
        try {
          const { rows } = await sql<{ bytes: number | string }>`select pg_database_size(current_database()) as bytes`.execute(opts.storage.db)
          size = Number(rows[0]?.bytes)
        } catch (err) {
          opts.logger.warn({ err }, 'could not read the database size for /metrics')
        }
      }
      if (size !== undefined && Number.isFinite(size)) this.set(size)
    },
  })

  const writer = opts.storage.writer
  new Counter({
    name: 'relay_db_writer_fallbacks_total',
    help: 'Repeated group writes (batch commits, identity rows, splitter log) run on the main thread because the database writer thread was not up (0 without one)',
    registers,
    collect() {
      this.reset()
      this.inc(writer?.counts.inline ?? 0)
    },
  })

  const persistent = opts.dataDir !== '' && !opts.dataDir.startsWith('memory://')
  if (!persistent) return
  let fsAt = 0
  let fs: { free: number; total: number } | undefined
  let fsFailing = false
  new Gauge({
    name: 'relay_data_dir_filesystem_bytes',
    help: 'Free and total bytes of the filesystem holding RELAY_DATA_DIR, refreshed at most once a minute',
    labelNames: ['state'],
    registers,
    async collect() {
      if (Date.now() - fsAt >= MIN_INTERVAL_MS) {
        fsAt = Date.now()
        try {
          const s = await statfs(opts.dataDir)
          fs = { free: s.bavail * s.bsize, total: s.blocks * s.bsize }
          fsFailing = false
        } catch (err) {
          // Once per failure, not once a minute (with PostgreSQL the directory may simply not exist).
          if (!fsFailing) opts.logger.warn({ err, dataDir: opts.dataDir }, 'could not read the data directory filesystem for /metrics')
          fsFailing = true
        }
      }
      if (fs) {
        this.set({ state: 'free' }, fs.free)
        this.set({ state: 'total' }, fs.total)
      }
    },
  })
}
