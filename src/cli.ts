#!/usr/bin/env node
/**
 * atrelay command line: `serve` runs the relay, `migrate` applies the schema.
 */
import { existsSync } from 'node:fs'
import { parseArgs } from 'node:util'
import type { Logger } from 'pino'
import { loadConfig, type Config } from './config.js'
import { ADMIN_USAGE, runAdminCommand } from './cli/admin-commands.js'
import { readAdminPasswordFile } from './admin-password.js'
import { VERSION } from './package-root.js'

// The relay, the database drivers and pino are imported only by the commands that
// use them: loading them all costs ~1.5 s, which admin commands (one HTTP call) should not pay.

/** Errors the operator fixes: printed as one line, no stack (matched by name, their modules load lazily). */
const OPERATOR_ERRORS = new Set(['ConfigError', 'SchemaTooNewError', 'AdminClientError', 'UsageError'])

const USAGE = `atrelay ${VERSION}: an AT Protocol relay

Usage:
  atrelay serve      run the relay (migrates the database first)
  atrelay migrate    apply database migrations and exit
  atrelay splitter --upstream <relay url> [--fallback <relay url>]
                     fan another relay's firehose out to many consumers: keeps its seqs,
                     serves subscribeRepos from its own event log, forwards the sync API
  atrelay help       show this text

${ADMIN_USAGE}

Configuration comes from environment variables; see config/example.env.`

/** A stop that takes longer than this (a stuck socket, a stalled database) is cut short. */
const SHUTDOWN_DEADLINE_MS = 10_000

async function serve(config: Config): Promise<void> {
  const [{ createLogger }, { startRelay }] = await Promise.all([import('./logger.js'), import('./relay.js')])
  const logger = createLogger(config.logLevel)
  await runUntilSignal(await startRelay(config, logger), logger)
}

async function splitter(config: Config): Promise<void> {
  const [{ createLogger }, { startSplitter }] = await Promise.all([import('./logger.js'), import('./splitter/index.js')])
  const logger = createLogger(config.logLevel)
  await runUntilSignal(await startSplitter(config, logger), logger)
}

class UsageError extends Error {
  override readonly name = 'UsageError'
}

/** `splitter` flags, applied over the environment so they go through the same validation. */
function splitterEnv(args: string[]): Record<string, string | undefined> {
  let values: { upstream?: string; fallback?: string }
  try {
    ;({ values } = parseArgs({ args, options: { upstream: { type: 'string' }, fallback: { type: 'string' } }, allowPositionals: false, strict: true }))
  } catch (err) {
    throw new UsageError(`splitter: ${(err as Error).message}`)
  }
  return {
    ...process.env,
    ...(values.upstream !== undefined ? { RELAY_SPLITTER_UPSTREAM: values.upstream } : {}),
    ...(values.fallback !== undefined ? { RELAY_SPLITTER_FALLBACK: values.fallback } : {}),
  }
}

/** Keeps the relay (or splitter) running until SIGINT/SIGTERM, then stops it within the deadline. */
async function runUntilSignal(service: { stop(): Promise<void> }, logger: Logger): Promise<void> {
  const { flushLogsBeforeExit } = await import('./logger.js')
  const exitNow = (code: number): never => {
    flushLogsBeforeExit()
    process.exit(code)
  }
  let signals = 0
  const shutdown = (signal: string) => {
    if (++signals > 1) {
      logger.warn({ signal }, 'second signal: exiting now')
      exitNow(1)
    }
    logger.info({ signal }, 'shutting down')
    setTimeout(() => {
      logger.error({ deadlineMs: SHUTDOWN_DEADLINE_MS }, 'shutdown did not finish in time: exiting now')
      exitNow(1)
    }, SHUTDOWN_DEADLINE_MS).unref()
    service.stop().then(
      () => exitNow(0),
      (err: unknown) => {
        logger.error({ err }, 'shutdown failed')
        exitNow(1)
      },
    )
  }
  process.on('SIGINT', () => shutdown('SIGINT'))
  process.on('SIGTERM', () => shutdown('SIGTERM'))
}

async function migrateOnly(config: Config): Promise<void> {
  const [{ openStorage }, { migrate }] = await Promise.all([import('./storage/db.js'), import('./storage/migrate.js')])
  const storage = await openStorage({ databaseUrl: config.databaseUrl, dataDir: config.dataDir })
  try {
    const applied = await migrate(storage)
    console.log(applied.length ? `applied migrations ${applied.join(', ')}` : 'database schema is up to date')
  } finally {
    await storage.close()
  }
}

async function main(argv: string[]): Promise<number> {
  const command = argv[0] ?? 'help'
  if (command === 'help' || command === '--help' || command === '-h') {
    console.log(USAGE)
    return 0
  }
  // Node >= 20.12 reads .env natively; variables already set in the environment win.
  if (existsSync('.env')) process.loadEnvFile('.env')
  const config = loadConfig(command === 'splitter' ? splitterEnv(argv.slice(1)) : process.env)
  switch (command) {
    case 'serve':
      await serve(config)
      return -1 // keep running
    case 'splitter':
      if (config.splitterUpstream === undefined) throw new UsageError('splitter: the upstream relay is required: --upstream <url> or RELAY_SPLITTER_UPSTREAM')
      await splitter(config)
      return -1
    case 'migrate':
      await migrateOnly(config)
      return 0
    case 'hosts':
    case 'domains':
    case 'accounts':
    case 'pull-hosts':
      // Unset: the password the relay generated and kept in RELAY_DATA_DIR, when this is the relay's machine.
      await runAdminCommand(argv, { adminUrl: config.adminUrl, adminPassword: config.adminPassword ?? readAdminPasswordFile(config.dataDir) })
      return 0
    default:
      console.error(`atrelay: unknown command "${command}"\n\n${USAGE}`)
      return 2
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    if (code >= 0) process.exit(code)
  },
  (err: unknown) => {
    // Configuration and schema problems are the operator's to fix: one clear line, no stack.
    if (err instanceof Error && OPERATOR_ERRORS.has(err.name)) console.error(`atrelay: ${err.message}`)
    else console.error('atrelay: fatal:', err)
    process.exit(1)
  },
)
