// A logger for a test relay whose lines are kept in memory (shown when something times out).
import { Writable } from 'node:stream'
import { pino, type Level, type Logger } from 'pino'

export interface RelayLog {
  lines: string[]
  tail(n?: number): string
}

/** A pino logger that keeps its lines in memory (the last 5,000) instead of printing them. */
export function memoryLogger(level: Level = 'info'): { logger: Logger; log: RelayLog } {
  const log: RelayLog = {
    lines: [],
    tail: (n = 40) => log.lines.slice(-n).join(''),
  }
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      if (log.lines.length >= 5_000) log.lines.shift()
      log.lines.push(chunk.toString('utf8'))
      done()
    },
  })
  return { logger: pino({ level, base: { service: 'atrelay-e2e' } }, stream), log }
}
