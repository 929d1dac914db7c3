/**
 * A real did:plc directory (`@did-plc/server`, in-memory mock DB) on a free
 * loopback port, so the relay resolves real DID documents for test accounts.
 * A DID's PDS endpoint is part of its genesis op: start the fake host before
 * creating accounts, or move them later with `TestAccount.movePds`.
 */
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { cidForRecord } from '@atproto/repo'
import type * as plc from '@did-plc/lib'
import { Database, PlcServer, type MockDatabase } from '@did-plc/server'
import type { TestAccount } from './repo-builder.js'

export interface PlcOpsEntry {
  did: string
  ops: plc.Operation[]
}

export class PlcOpError extends Error {
  constructor(
    readonly reason: 'rejected',
    readonly did: string,
    readonly status: number,
    body: string,
  ) {
    super(`PLC refused op for ${did}: ${status} ${body}`)
  }
}

export class LoopbackPlc {
  readonly url: string
  readonly port: number

  private constructor(
    private readonly plcServer: PlcServer,
    private readonly db: MockDatabase,
    private readonly server: Server,
  ) {
    this.port = (server.address() as AddressInfo).port
    this.url = `http://localhost:${this.port}`
  }

  /** Starts on 127.0.0.1 only (PlcServer.start() would bind every interface). */
  static async start(opts: { port?: number } = {}): Promise<LoopbackPlc> {
    const db = Database.mock()
    const plcServer = PlcServer.create({ db, port: opts.port ?? 0 })
    const server = createServer(plcServer.app)
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(opts.port ?? 0, '127.0.0.1', () => {
        server.off('error', reject)
        resolve()
      })
    })
    return new LoopbackPlc(plcServer, db, server)
  }

  /** POSTs a signed op (genesis or update) for `did`. */
  async postOp(did: string, op: plc.Operation): Promise<void> {
    const res = await fetch(`${this.url}/${encodeURIComponent(did)}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(op),
    })
    if (!res.ok) throw new PlcOpError('rejected', did, res.status, await res.text())
    await res.arrayBuffer()
  }

  /** Registers an account: posts every op it has (genesis first). */
  async register(account: TestAccount): Promise<void> {
    for (const op of account.plcOps) await this.postOp(account.did, op)
  }

  /** Posts many DIDs' op logs with bounded concurrency (each DID's ops stay in order). */
  async registerAll(entries: Iterable<PlcOpsEntry>, concurrency = 8): Promise<void> {
    const queue = [...entries]
    let next = 0
    const worker = async () => {
      while (next < queue.length) {
        const entry = queue[next++] as PlcOpsEntry
        for (const op of entry.ops) await this.postOp(entry.did, op)
      }
    }
    await Promise.all(Array.from({ length: Math.min(concurrency, queue.length) }, worker))
  }

  /**
   * Trusted bulk import straight into the in-memory store, skipping the
   * server's signature checks (its bundled pure-JS secp256k1 costs ~10–30 ms
   * per DID here). Only for ops this project generated itself; the resulting
   * documents and audit logs are the same as after re-POSTing.
   */
  async importOps(entries: Iterable<PlcOpsEntry>): Promise<void> {
    for (const entry of entries) {
      if (this.db.contents[entry.did]) throw new Error(`PLC import: ${entry.did} already present`)
      const indexed: plc.IndexedOperation[] = []
      for (const op of entry.ops) {
        const cid = await cidForRecord(op as unknown as Parameters<typeof cidForRecord>[0])
        if (indexed.length > 0 && op.prev !== indexed[indexed.length - 1]!.cid.toString()) {
          throw new Error(`PLC import: op ${indexed.length} of ${entry.did} does not follow the previous op`)
        }
        indexed.push({ did: entry.did, operation: op, cid: cid as unknown as plc.IndexedOperation['cid'], nullified: false, createdAt: new Date() })
      }
      this.db.contents[entry.did] = indexed
    }
  }

  /** GET /:did — the DID document (legacy form from this PLC version). */
  async resolve(did: string): Promise<Record<string, unknown>> {
    const res = await fetch(`${this.url}/${encodeURIComponent(did)}`)
    if (!res.ok) throw new Error(`PLC resolve ${did}: ${res.status} ${await res.text()}`)
    return (await res.json()) as Record<string, unknown>
  }

  /** GET /:did/log/audit — every op with its CID and time. */
  async auditLog(did: string): Promise<unknown[]> {
    const res = await fetch(`${this.url}/${encodeURIComponent(did)}/log/audit`)
    if (!res.ok) throw new Error(`PLC audit log ${did}: ${res.status}`)
    return (await res.json()) as unknown[]
  }

  async close(): Promise<void> {
    await new Promise<void>((resolve) => {
      this.server.close(() => resolve())
      this.server.closeAllConnections()
    })
    await this.plcServer.ctx.db.close()
  }
}
