/** Jetstream test clients and the expected v1 events of a firehose output. */
import { execFileSync } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import WebSocket from 'ws'
import type { Relay } from '../../src/relay.js'
import { dictionaryPath, LEGACY_DICTIONARY_FILE } from '../../src/jetstream/zstd.js'
import { type FirehoseEvent } from '../helpers/firehose-client.js'
import { linkOf } from '../helpers/relay.js'
import { waitUntil } from '../helpers/wait.js'

export type JetJson = Record<string, any>

export function subscribeUrl(relay: Relay, query = ''): string {
  return `ws://127.0.0.1:${relay.apiAddress.port}/subscribe${query ? `?${query}` : ''}`
}

/** One line per v1 event, enough to tell any two apart: what a test compares. */
export function keyOf(e: JetJson): string {
  switch (e.kind) {
    case 'commit':
      return `${e.did} commit ${e.commit.operation} ${e.commit.collection}/${e.commit.rkey} ${e.commit.cid ?? '-'} ${e.commit.rev}`
    case 'identity':
      return `${e.did} identity ${e.identity.seq}`
    case 'account':
      return `${e.did} account ${e.account.active} ${e.account.status ?? ''} ${e.account.seq}`
    default:
      return `${e.did} ${e.kind}`
  }
}

/** The v1 events (as keys) a relay's firehose output owes a Jetstream subscriber with this filter. */
export function expectedKeys(events: FirehoseEvent[], filter: { collections?: string[]; dids?: string[] } = {}): string[] {
  const out: string[] = []
  const collectionOk = (c: string) =>
    filter.collections === undefined || filter.collections.some((w) => (w.endsWith('.*') ? c.startsWith(w.slice(0, -1)) : c === w))
  for (const e of events) {
    if (filter.dids !== undefined && !filter.dids.includes(e.did)) continue
    const b = e.body
    if (e.t === '#commit') {
      for (const op of b.ops as { action: string; path: string; cid: unknown }[]) {
        const [collection] = op.path.split('/')
        if (!collectionOk(collection!)) continue
        out.push(`${e.did} commit ${op.action} ${op.path} ${linkOf(op.cid) ?? '-'} ${String(b.rev)}`)
      }
    } else if (e.t === '#identity') out.push(`${e.did} identity ${e.seq}`)
    else if (e.t === '#account') out.push(`${e.did} account ${String(b.active)} ${typeof b.status === 'string' ? b.status : ''} ${e.seq}`)
  }
  return out
}

/** A plain `ws` client of /subscribe that keeps every message (text JSON, or zstd frames decoded by the zstd CLI). */
export class RawJetClient {
  readonly events: JetJson[] = []
  readonly binary: Buffer[] = []
  readonly text: Buffer[] = []
  closeCode: number | undefined
  closeReason = ''

  private constructor(readonly ws: WebSocket) {
    ws.on('message', (data: Buffer, isBinary: boolean) => {
      if (isBinary) this.binary.push(data)
      else {
        this.text.push(data)
        this.events.push(JSON.parse(data.toString('utf8')) as JetJson)
      }
    })
    ws.on('close', (code, reason) => {
      this.closeCode = code
      this.closeReason = reason.toString()
    })
    ws.on('error', () => undefined)
  }

  static async connect(url: string, opts: WebSocket.ClientOptions = {}, protocols: string[] = []): Promise<RawJetClient> {
    const ws = new WebSocket(url, protocols, { perMessageDeflate: false, ...opts })
    const client = new RawJetClient(ws)
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve())
      ws.once('error', reject)
    })
    return client
  }

  send(value: unknown): void {
    this.ws.send(JSON.stringify(value))
  }

  async waitForCount(n: number, what: string, timeoutMs = 15_000): Promise<void> {
    await waitUntil(() => this.events.length + this.binary.length >= n, () => `${what} (${this.events.length + this.binary.length}/${n})`, timeoutMs)
  }

  async waitClosed(timeoutMs = 10_000): Promise<void> {
    await waitUntil(() => this.closeCode !== undefined, 'the relay to close the subscriber', timeoutMs)
  }

  async close(): Promise<void> {
    if (this.ws.readyState === WebSocket.CLOSED) return
    await new Promise<void>((resolve) => {
      this.ws.once('close', () => resolve())
      this.ws.close()
      setTimeout(() => {
        this.ws.terminate()
        resolve()
      }, 1_000).unref()
    })
  }
}

/** Decodes zstd frames with the `zstd` command (libzstd's CLI: not the binding the relay compresses with) and the shipped v1 dictionary. */
export function zstdCliDecode(frames: Buffer[], dictionaryFile: string = LEGACY_DICTIONARY_FILE): Buffer[] {
  const dir = mkdtempSync(join(tmpdir(), 'jet-zstd-'))
  try {
    return frames.map((frame, i) => {
      const file = join(dir, `${i}.zst`)
      writeFileSync(file, frame)
      return execFileSync('zstd', ['-q', '-d', '-c', '-D', dictionaryPath(dictionaryFile), file])
    })
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

/** The status and body of a refused upgrade (the answer before any WebSocket exists). */
export function refusedUpgrade(url: string, opts: WebSocket.ClientOptions = {}): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { perMessageDeflate: false, ...opts })
    ws.once('open', () => {
      ws.terminate()
      reject(new Error(`upgrade to ${url} was accepted`))
    })
    ws.once('unexpected-response', (_req, res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (chunk: string) => (body += chunk))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }))
    })
    ws.once('error', (err) => {
      if (!/Unexpected server response/.test(err.message)) reject(err)
    })
  })
}
