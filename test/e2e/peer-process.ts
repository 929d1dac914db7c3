// Spawns test/peer/peer.mjs (real PLC + PDSes) as a child process and reads its ready line.
// Used by the e2e tests; the relay's own tests can reuse it.
import { spawn, type ChildProcess } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import readline from 'node:readline'
import { fileURLToPath } from 'node:url'
import type { PeerInfo } from '../peer/driver.mjs'

export const PEER_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', 'peer')

export interface PeerProcess {
  info: PeerInfo
  child: ChildProcess
  /** Everything the peer wrote to stderr (for failure messages). */
  stderr(): string
  /** SIGTERM, wait for exit (SIGKILL after `timeoutMs`); resolves the exit code. Idempotent. */
  stop(timeoutMs?: number): Promise<number | null>
}

export interface PeerOptions {
  pdsCount?: number
  /** crawler URLs the PDSes notify (PDS_CRAWLERS) */
  crawlers?: string[]
  maxSubscriptionBuffer?: number
  readyTimeoutMs?: number
}

export async function startPeer(opts: PeerOptions = {}): Promise<PeerProcess> {
  const env: NodeJS.ProcessEnv = { ...process.env, LOG_ENABLED: 'false' }
  if (opts.pdsCount !== undefined) env.PEER_PDS_COUNT = String(opts.pdsCount)
  if (opts.crawlers) env.PEER_CRAWLERS = opts.crawlers.join(',')
  if (opts.maxSubscriptionBuffer !== undefined) env.PEER_MAX_SUB_BUFFER = String(opts.maxSubscriptionBuffer)
  const child = spawn(process.execPath, [path.join(PEER_DIR, 'peer.mjs')], {
    cwd: PEER_DIR,
    env,
    // stdin stays open: the peer exits when it closes, so it never outlives this process.
    stdio: ['pipe', 'pipe', 'pipe'],
  })
  let stderr = ''
  child.stderr!.setEncoding('utf8')
  child.stderr!.on('data', (chunk: string) => {
    if (stderr.length < 100_000) stderr += chunk
  })
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
  let info: PeerInfo | undefined

  let stopping: Promise<number | null> | undefined
  const stop = (timeoutMs = 15_000): Promise<number | null> => {
    stopping ??= (async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM')
      const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs)
      const code = await exited
      clearTimeout(timer)
      child.stdin?.destroy()
      // After a SIGKILL the peer could not clean up after itself.
      if (info?.tmpDir) fs.rmSync(info.tmpDir, { recursive: true, force: true })
      return code
    })()
    return stopping
  }

  const rl = readline.createInterface({ input: child.stdout! })
  const readyTimeoutMs = opts.readyTimeoutMs ?? 60_000
  try {
    info = await new Promise<PeerInfo>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`peer not ready after ${readyTimeoutMs} ms`)), readyTimeoutMs)
      rl.once('line', (line) => {
        clearTimeout(timer)
        try {
          const parsed = JSON.parse(line) as PeerInfo
          if (parsed.ready !== true) throw new Error(`unexpected first line: ${line}`)
          resolve(parsed)
        } catch (err) {
          reject(err)
        }
      })
      void exited.then((code) => {
        clearTimeout(timer)
        reject(new Error(`peer exited with code ${code} before it was ready`))
      })
    })
  } catch (err) {
    await stop()
    throw new Error(`${(err as Error).message}\npeer stderr:\n${stderr}`)
  } finally {
    rl.close()
    child.stdout!.resume() // keep draining: a full pipe must never block the peer
  }
  return { info, child, stderr: () => stderr, stop }
}
