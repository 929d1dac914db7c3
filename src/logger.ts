/**
 * Structured JSON logs (pino) on stdout. Components log with `host`, `did`, `seq` fields.
 *
 * stdout is written asynchronously and never blocks the event loop: with the default synchronous
 * destination, a stdout pipe that stops draining (`npm start | tee log`, then Ctrl-C) made every
 * write sleep and retry in a loop, so the process ignored SIGINT and SIGTERM and never exited.
 * While the relay runs, a stalled stdout only buffers (bounded by MAX_BUFFERED_LOG_BYTES, beyond
 * which lines are dropped and counted); once shutdown has begun, the final flush gives up after
 * FINAL_FLUSH_LIMIT_MS.
 */
import { pino, type Logger } from 'pino'
import type { LogLevel } from './config.js'

export type { Logger }

/** Log bytes kept while stdout is not draining; beyond this, lines are dropped. */
const MAX_BUFFERED_LOG_BYTES = 16 * 1024 * 1024
/** How long the final flush at exit may wait for a stalled stdout. */
const FINAL_FLUSH_LIMIT_MS = 1_000

type Destination = ReturnType<typeof pino.destination>

interface StdoutState {
  dest: Destination
  /** Set when the final flush starts. */
  flushing: { since: number } | null
  dropped: number
}

let stdout: StdoutState | undefined

function stdoutDestination(): Destination {
  if (stdout) return stdout.dest
  const state: StdoutState = {
    flushing: null,
    dropped: 0,
    dest: pino.destination({
      dest: 1,
      sync: false,
      maxLength: MAX_BUFFERED_LOG_BYTES,
      // Retrying later is free while the process runs (the async path waits on a timer);
      // during the final synchronous flush each retry blocks, so it is bounded.
      retryEAGAIN: () => state.flushing === null || Date.now() - state.flushing.since < FINAL_FLUSH_LIMIT_MS,
    }),
  }
  state.dest.on('drop', () => state.dropped++)
  // A stdout that fails for good (closed, or stalled through the final flush): stop writing to it.
  // pino already does this for EPIPE; stderr may be gone too, so this is said at most once.
  state.dest.on('error', (err: NodeJS.ErrnoException) => disable(state.dest, err))
  stdout = state
  return state.dest
}

const disabled = new WeakSet<Destination>()

function disable(dest: Destination, err: NodeJS.ErrnoException): void {
  if (disabled.has(dest)) return
  disabled.add(dest)
  const noop = () => undefined
  Object.assign(dest, { write: () => true, end: noop, flush: noop, flushSync: noop })
  try {
    process.stderr.write(`atrelay: stdout failed (${err.code ?? err.message}); logging stopped\n`)
  } catch {
    // stderr is gone as well: there is nowhere left to say it.
  }
}

export function createLogger(level: LogLevel = 'info'): Logger {
  return pino({ level, base: { service: 'atrelay' } }, stdoutDestination())
}

/**
 * Writes out buffered log lines before the process exits, waiting at most
 * FINAL_FLUSH_LIMIT_MS for a stdout that does not drain. Call it right before process.exit.
 */
export function flushLogsBeforeExit(): void {
  if (!stdout) return
  stdout.flushing = { since: Date.now() }
  try {
    stdout.dest.flushSync()
  } catch (err) {
    disable(stdout.dest, err as NodeJS.ErrnoException)
  }
}

/** Log lines dropped because stdout was not draining (for the shutdown line and tests). */
export function droppedLogLines(): number {
  return stdout?.dropped ?? 0
}
