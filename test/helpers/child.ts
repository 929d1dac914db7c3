/** Run the relay CLI from source in a child process and read its JSON log lines. */
import { spawn, type ChildProcess } from 'node:child_process'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'

export const CLI = fileURLToPath(new URL('../../src/cli.ts', import.meta.url))

export interface RelayChild {
  proc: ChildProcess
  lines: Record<string, unknown>[]
  stderr: string[]
  /** Resolves with the first log line matching `predicate`. */
  waitFor(predicate: (line: Record<string, unknown>) => boolean, timeoutMs?: number): Promise<Record<string, unknown>>
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>
}

export function spawnRelay(args: string[], env: Record<string, string>): RelayChild {
  const proc = spawn(process.execPath, ['--import', 'tsx', CLI, ...args], {
    env: { ...process.env, LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  const lines: Record<string, unknown>[] = []
  const stderr: string[] = []
  const waiters: { predicate: (l: Record<string, unknown>) => boolean; resolve: (l: Record<string, unknown>) => void }[] = []
  createInterface({ input: proc.stdout! }).on('line', (text) => {
    let line: Record<string, unknown>
    try {
      line = JSON.parse(text) as Record<string, unknown>
    } catch {
      line = { text }
    }
    lines.push(line)
    for (const w of [...waiters]) if (w.predicate(line)) waiters.splice(waiters.indexOf(w), 1) && w.resolve(line)
  })
  createInterface({ input: proc.stderr! }).on('line', (text) => stderr.push(text))
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    proc.on('exit', (code, signal) => resolve({ code, signal })),
  )
  return {
    proc,
    lines,
    stderr,
    exited,
    waitFor(predicate, timeoutMs = 30_000) {
      const found = lines.find(predicate)
      if (found) return Promise.resolve(found)
      return new Promise((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new Error(`timed out waiting for a log line; stderr: ${stderr.join('\n')}`)),
          timeoutMs,
        )
        waiters.push({ predicate, resolve: (l) => (clearTimeout(timer), resolve(l)) })
        void exited.then(({ code }) => {
          clearTimeout(timer)
          reject(new Error(`relay exited (${code}) before the log line; stderr: ${stderr.join('\n')}`))
        })
      })
    },
  }
}
