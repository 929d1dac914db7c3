/** Shared helpers for sequencer and firehose tests: accounts, hosts and synthetic event bodies. */
import { encode, toBytes } from '@atcute/cbor'
import { createHash } from 'node:crypto'
import pino from 'pino'
import type { Storage } from '../../src/storage/db.js'
import type { AcceptedEvent } from '../../src/sequencer/types.js'
import type { UpstreamTicket } from '../../src/sequencer/host-cursors.js'

export const silentLogger = pino({ level: 'silent' })

export async function createHost(storage: Storage, hostname: string): Promise<number> {
  const row = await storage.db
    .insertInto('host')
    .values({ hostname, account_limit: 1000 })
    .returning('id')
    .executeTakeFirstOrThrow()
  return row.id
}

export async function createAccounts(storage: Storage, hostId: number, n: number, prefix = 'did:plc:test'): Promise<number[]> {
  const ids: number[] = []
  const CHUNK = 1000
  for (let i = 0; i < n; i += CHUNK) {
    const rows = await storage.db
      .insertInto('account')
      .values(
        Array.from({ length: Math.min(CHUNK, n - i) }, (_, j) => ({ did: `${prefix}${i + j}`, host_id: hostId })),
      )
      .returning('id')
      .execute()
    ids.push(...rows.map((r) => r.id))
  }
  return ids
}

/** A fake 36-byte binary CID derived from a label. */
export function fakeCid(label: string): Uint8Array {
  const digest = createHash('sha256').update(label).digest()
  return new Uint8Array(Buffer.concat([Buffer.from([0x01, 0x71, 0x12, 0x20]), digest]))
}

/** A canonical #commit-like body with a `seq` to splice and `padding` bytes of blocks. */
export function commitBody(did: string, rev: string, padding = 64): Uint8Array {
  return encode({
    seq: 0,
    repo: did,
    rev,
    since: null,
    blocks: toBytes(new Uint8Array(padding).fill(7)),
    ops: [],
    time: '2024-01-01T00:00:00.000Z',
    tooBig: false,
    rebase: false,
  })
}

export function commitEvent(
  accountId: number,
  did: string,
  rev: string,
  opts: { padding?: number; ticket?: UpstreamTicket } = {},
): AcceptedEvent {
  return {
    accountId,
    did,
    kind: 'commit',
    t: '#commit',
    body: commitBody(did, rev, opts.padding),
    head: { rev, commitCid: fakeCid(`commit:${did}:${rev}`), dataCid: fakeCid(`data:${did}:${rev}`) },
    ...(opts.ticket ? { ticket: opts.ticket } : {}),
  }
}

/** Monotonic TID-ish revs for tests (sortable strings). */
export function rev(n: number): string {
  return '3k' + n.toString(36).padStart(11, '2')
}

