/** Structured JSON logs (pino) on stdout. Components log with `host`, `did`, `seq` fields. */
import { pino, type Logger } from 'pino'
import type { LogLevel } from './config.js'

export type { Logger }

export function createLogger(level: LogLevel = 'info'): Logger {
  return pino({ level, base: { service: 'atrelay' } })
}
