/**
 * Splitters for tests: `startTestSplitter` runs one in-process (PGlite in its own data
 * directory, or a Postgres URL) following `upstream`, with short redial backoff.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Logger } from 'pino'
import { loadConfig, type LogLevel } from '../../src/config.js'
import { createLogger } from '../../src/logger.js'
import { startSplitter, type Splitter } from '../../src/splitter/index.js'

export interface TestSplitterOptions {
  upstream: string
  fallback?: string
  /** Postgres URL; omitted: embedded PGlite in a data directory of its own (kept across restarts with `dataDir`). */
  databaseUrl?: string
  dataDir?: string
  env?: Record<string, string>
  logger?: Logger
}

export async function startTestSplitter(opts: TestSplitterOptions): Promise<Splitter> {
  const ownDir = opts.databaseUrl === undefined && opts.dataDir === undefined ? await mkdtemp(join(tmpdir(), 'atrelay-splitter-')) : undefined
  const config = loadConfig({
    ...(opts.databaseUrl === undefined ? { RELAY_DATA_DIR: opts.dataDir ?? ownDir! } : { DATABASE_URL: opts.databaseUrl }),
    RELAY_DB_POOL_SIZE: '4',
    RELAY_API_LISTEN: '127.0.0.1:0',
    RELAY_METRICS_LISTEN: '127.0.0.1:0',
    RELAY_SPLITTER_UPSTREAM: opts.upstream,
    ...(opts.fallback !== undefined ? { RELAY_SPLITTER_FALLBACK: opts.fallback } : {}),
    ...opts.env,
  })
  const logger = opts.logger ?? createLogger((process.env.RELAY_TEST_LOG as LogLevel | undefined) ?? 'silent')
  const splitter = await startSplitter(config, logger, { backoff: { baseMs: 50, maxMs: 300 }, maxBatchDelayMs: 5 })
  const stop = splitter.stop.bind(splitter)
  let stopping: Promise<void> | undefined
  splitter.stop = () => (stopping ??= stop().finally(() => (ownDir === undefined ? undefined : rm(ownDir, { recursive: true, force: true }))))
  return splitter
}

export function splitterUrl(splitter: Pick<Splitter, 'apiAddress'>, path: string): string {
  return `http://127.0.0.1:${splitter.apiAddress.port}${path}`
}
