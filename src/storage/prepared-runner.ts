/**
 * Named statements through a `pg` pool: pg prepares a name on each connection
 * the first time it runs there. Measured on the batch commit (70 events of
 * 1.6 KB per batch, bench/notes.md): the Postgres backend's CPU per event
 * 42 → 26 µs, the relay's 29 → 23 µs. A transaction pooler (pgbouncer) can
 * break named statements; the first such error switches them off for good
 * and is thrown: the batch commit and the splitter's log retry it as any
 * failed batch, the identity group commit fails that save (the row is written
 * at the next resolution).
 *
 * One owner for both places a repeated statement runs: the main thread's
 * ingest pool (RELAY_DB_WRITER=inline) and the writer thread's own pool.
 */
import { createHash } from 'node:crypto'
import type pg from 'pg'

/** Distinct statement texts given a name; past it, further texts run unprepared (the texts are a handful in practice). */
const MAX_PREPARED_TEXTS = 256
/** The server no longer knows a statement the client prepared (26000), or already has the name (42P05): a pooler in between. */
const PREPARED_STATEMENT_LOST = new Set(['26000', '42P05'])

export type RepeatedRunner = (text: string, values: readonly unknown[]) => Promise<void>

/** `onDisabled` is told once, with the error, when prepared statements are switched off. */
export function preparedRunner(pool: pg.Pool, onDisabled: (err: Error, code: string) => void): RepeatedRunner {
  const names = new Map<string, string>()
  let enabled = true
  return async (text, values) => {
    const name = enabled ? statementName(names, text) : undefined
    if (name === undefined) {
      await pool.query(text, values as unknown[])
      return
    }
    try {
      await pool.query({ name, text, values: values as unknown[] })
    } catch (err) {
      const code = (err as { code?: unknown }).code
      if (enabled && typeof code === 'string' && PREPARED_STATEMENT_LOST.has(code)) {
        enabled = false
        onDisabled(err as Error, code)
      }
      throw err
    }
  }
}

function statementName(names: Map<string, string>, text: string): string | undefined {
  let name = names.get(text)
  if (name === undefined) {
    if (names.size >= MAX_PREPARED_TEXTS) return undefined
    name = 'atrelay_' + createHash('sha256').update(text).digest('hex').slice(0, 16)
    names.set(text, name)
  }
  return name
}

/** The warning both runners log when prepared statements are switched off. */
export const PREPARED_OFF_MESSAGE = 'prepared statements do not survive on this database connection (a pooler?); running repeated statements unprepared'
