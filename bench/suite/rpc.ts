/**
 * Line-delimited JSON RPC between the bench parent and its child processes
 * (fleet, consumers, reference consumer). The child prints `{"ready":true,…}`
 * first, then answers `{id, cmd, …}` lines on stdin with `{id, ok, result|error}`.
 * A child exits when its stdin closes, so it never outlives the parent.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'

export type Handler = (args: Record<string, unknown>) => unknown

const ROOT = fileURLToPath(new URL('../../', import.meta.url))

/** In a child: print the ready line, then serve commands until stdin ends (then run `onEnd` and exit). */
export function serveRpc(ready: Record<string, unknown>, handlers: Record<string, Handler>, onEnd: () => Promise<void>): void {
  const write = (obj: unknown) => process.stdout.write(JSON.stringify(obj) + '\n')
  write({ ready: true, ...ready })
  const rl = createInterface({ input: process.stdin })
  rl.on('line', (line) => {
    if (!line.trim()) return
    const msg = JSON.parse(line) as { id: number; cmd: string } & Record<string, unknown>
    const handler = handlers[msg.cmd]
    if (!handler) return write({ id: msg.id, ok: false, error: `unknown command ${msg.cmd}` })
    Promise.resolve()
      .then(() => handler(msg))
      .then(
        (result) => write({ id: msg.id, ok: true, result }),
        (err: unknown) => write({ id: msg.id, ok: false, error: String((err as Error)?.stack ?? err) }),
      )
  })
  rl.on('close', () => {
    void onEnd().finally(() => process.exit(0))
  })
}

export interface ChildOptions {
  /** Path relative to the repository root; .ts runs under tsx, .mjs/.js with plain node. */
  script: string
  args?: string[]
  /** Extra node flags (e.g. --max-old-space-size). */
  nodeFlags?: string[]
  /** Environment variables added to this process's for the child. */
  env?: Record<string, string>
  /** Give up waiting for the ready line after this long. */
  readyTimeoutMs?: number
  log?: (line: string) => void
}

/** The parent's end: spawns a child, waits for its ready line, sends commands. */
export class ChildRpc {
  readonly ready: Record<string, unknown>
  private nextId = 1
  private readonly pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>()
  private exited = false

  private constructor(
    private readonly child: ChildProcess,
    ready: Record<string, unknown>,
    lines: AsyncIterator<string>,
  ) {
    this.ready = ready
    void (async () => {
      for (;;) {
        const next = await lines.next()
        if (next.done) break
        let msg: { id?: number; ok?: boolean; result?: unknown; error?: string }
        try {
          msg = JSON.parse(next.value)
        } catch {
          continue
        }
        const p = msg.id !== undefined ? this.pending.get(msg.id) : undefined
        if (!p) continue
        this.pending.delete(msg.id!)
        if (msg.ok) p.resolve(msg.result)
        else p.reject(new Error(msg.error ?? 'child command failed'))
      }
    })()
    child.once('exit', (code) => {
      this.exited = true
      for (const p of this.pending.values()) p.reject(new Error(`child exited with code ${code}`))
      this.pending.clear()
    })
  }

  get pid(): number | undefined {
    return this.child.pid
  }

  static async start(opts: ChildOptions): Promise<ChildRpc> {
    const isTs = opts.script.endsWith('.ts')
    const argv = [...(opts.nodeFlags ?? []), ...(isTs ? ['--import', 'tsx'] : []), opts.script, ...(opts.args ?? [])]
    const child = spawn(process.execPath, argv, { cwd: ROOT, stdio: ['pipe', 'pipe', 'pipe'] })
    const log = opts.log ?? (() => {})
    createInterface({ input: child.stderr! }).on('line', (l) => log(`  [${opts.script.split('/').pop()}] ${l}`))
    const rl = createInterface({ input: child.stdout! })
    const lines = rl[Symbol.asyncIterator]()
    const timeoutMs = opts.readyTimeoutMs ?? 120_000
    let timer: NodeJS.Timeout | undefined
    const exited = new Promise<never>((_, reject) => child.once('exit', (code) => reject(new Error(`${opts.script} exited with code ${code} before it was ready`))))
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${opts.script}: no ready line after ${timeoutMs} ms`)), timeoutMs)
    })
    const readLine = (async () => {
      for (;;) {
        const next = await lines.next()
        if (next.done) throw new Error(`${opts.script}: stdout closed before the ready line`)
        try {
          const msg = JSON.parse(next.value) as Record<string, unknown>
          if (msg.ready === true) return msg
        } catch {
          log(`  [${opts.script}] ${next.value}`)
        }
      }
    })()
    try {
      const ready = await Promise.race([readLine, exited, timeout])
      return new ChildRpc(child, ready, lines)
    } catch (err) {
      child.kill('SIGKILL')
      throw err
    } finally {
      clearTimeout(timer)
    }
  }

  call<T = unknown>(cmd: string, args: Record<string, unknown> = {}, timeoutMs = 60_000): Promise<T> {
    if (this.exited) return Promise.reject(new Error(`child exited; cannot run ${cmd}`))
    const id = this.nextId++
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id)
        reject(new Error(`child command ${cmd} timed out after ${timeoutMs} ms`))
      }, timeoutMs)
      this.pending.set(id, {
        resolve: (v) => {
          clearTimeout(timer)
          resolve(v as T)
        },
        reject: (e) => {
          clearTimeout(timer)
          reject(e)
        },
      })
      this.child.stdin!.write(JSON.stringify({ id, cmd, ...args }) + '\n')
    })
  }

  /** Closes stdin (the child cleans up and exits); kills it if it has not exited after `graceMs`. */
  async stop(graceMs = 10_000): Promise<void> {
    if (this.exited) return
    const done = new Promise<void>((resolve) => this.child.once('exit', () => resolve()))
    this.child.stdin!.end()
    const timer = setTimeout(() => this.child.kill('SIGKILL'), graceMs)
    await done
    clearTimeout(timer)
  }
}

/** Runs a one-shot child that prints one JSON line last; resolves with it (kills the child after `timeoutMs`). */
export async function runJsonChild<T>(opts: ChildOptions & { timeoutMs: number }): Promise<T> {
  const isTs = opts.script.endsWith('.ts')
  const argv = [...(opts.nodeFlags ?? []), ...(isTs ? ['--import', 'tsx'] : []), opts.script, ...(opts.args ?? [])]
  const child = spawn(process.execPath, argv, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...opts.env } })
  const log = opts.log ?? (() => {})
  createInterface({ input: child.stderr! }).on('line', (l) => log(`  [${opts.script.split('/').pop()}] ${l}`))
  let last = ''
  createInterface({ input: child.stdout! }).on('line', (l) => {
    if (l.trim().startsWith('{')) last = l
    else log(`  [${opts.script.split('/').pop()}] ${l}`)
  })
  const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs)
  const code = await new Promise<number | null>((resolve) => child.once('close', resolve))
  clearTimeout(timer)
  if (code !== 0 || !last) throw new Error(`${opts.script} exited with code ${code}${last ? '' : ' and no result'}`)
  return JSON.parse(last) as T
}
