/**
 * The two cache layers in front of resolution: a bounded in-memory LRU, and
 * the `identity` table so a restart does not re-resolve every DID.
 */
import { CompiledQuery } from 'kysely'
import { LRUCache } from 'lru-cache'
import { parseDidKey } from '../atproto/keys.js'
import { int8Array, textArray } from '../storage/binary-array.js'
import type { Storage } from '../storage/db.js'
import type { IdentityRow } from '../storage/types.js'
import { parsePdsEndpoint, type IdentityResult } from './did-doc.js'

export interface CachedIdentity {
  result: IdentityResult
  /** When the resolution that produced `result` started (ms since epoch). */
  fetchedAt: number
  /** When to resolve again (ms since epoch). */
  expiresAt: number
}

/** Memory stays flat however many DIDs pass through: at most `max` entries. */
export class IdentityMemoryCache {
  private readonly lru: LRUCache<string, CachedIdentity>

  constructor(max: number) {
    this.lru = new LRUCache({ max })
  }

  get(did: string): CachedIdentity | undefined {
    return this.lru.get(did)
  }

  /** Stores `entry` unless a newer resolution of the same DID is already there. */
  set(did: string, entry: CachedIdentity): void {
    const current = this.lru.peek(did)
    if (current && current.fetchedAt > entry.fetchedAt) return
    this.lru.set(did, entry)
  }

  delete(did: string): void {
    this.lru.delete(did)
  }

  get size(): number {
    return this.lru.size
  }

  get max(): number {
    return this.lru.max
  }
}

export class IdentityStoreError extends Error {
  override readonly name = 'IdentityStoreError'
  readonly reason = 'bad_row'
}

/** Converts a result to the `identity` table's columns. */
export function identityToRow(result: IdentityResult, fetchedAt: number) {
  return {
    did: result.did,
    status: result.status,
    signing_key: result.status === 'ok' ? result.signingKey.didKey : null,
    pds_endpoint: result.status === 'ok' ? result.pdsEndpoint : null,
    handle: result.status === 'ok' ? result.handle : null,
    // Error text can quote what a remote sent; Postgres text cannot hold NUL.
    error: result.status === 'ok' ? null : result.error.replaceAll('\u0000', ''),
    fetched_at: new Date(fetchedAt),
  }
}

/** Rebuilds a result from a row; throws `IdentityStoreError` for a row that cannot be used. */
export function rowToIdentity(row: IdentityRow): { result: IdentityResult; fetchedAt: number } {
  const fetchedAt = new Date(row.fetched_at).getTime()
  if (row.status !== 'ok') {
    return { result: { status: row.status, did: row.did, error: row.error ?? '' }, fetchedAt }
  }
  const pds = row.pds_endpoint ? parsePdsEndpoint(row.pds_endpoint) : null
  if (!row.signing_key || !pds) throw new IdentityStoreError(`identity row for ${row.did} lacks key or PDS`)
  let signingKey
  try {
    signingKey = parseDidKey(row.signing_key)
  } catch (err) {
    throw new IdentityStoreError(`identity row for ${row.did} has a bad key: ${(err as Error).message}`)
  }
  return {
    result: { status: 'ok', did: row.did, signingKey, pdsEndpoint: pds.endpoint, pdsHost: pds.host, handle: row.handle },
    fetchedAt,
  }
}

type IdentityRowValues = ReturnType<typeof identityToRow>

interface PendingSave {
  row: IdentityRowValues
  waiters: { resolve: () => void; reject: (err: unknown) => void }[]
}

/** Rows per upsert statement. */
const SAVE_BATCH = 500

/** An older resolution never overwrites a newer one. Times travel as ms (int8) and become timestamptz here. */
const UPSERT_IDENTITIES =
  'insert into identity (did, status, signing_key, pds_endpoint, handle, error, fetched_at)' +
  ' select v.did, v.status, v.signing_key, v.pds_endpoint, v.handle, v.error, to_timestamp(v.fetched_ms / 1000.0)' +
  ' from unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::int8[])' +
  ' as v (did, status, signing_key, pds_endpoint, handle, error, fetched_ms)' +
  ' on conflict (did) do update set status = excluded.status, signing_key = excluded.signing_key, pds_endpoint = excluded.pds_endpoint,' +
  ' handle = excluded.handle, error = excluded.error, fetched_at = excluded.fetched_at' +
  ' where identity.fetched_at <= excluded.fetched_at'

/** Reads and writes the `identity` table. */
export class IdentityStore {
  /** Saves waiting for the statement in flight; at most one per DID (the newest). */
  private readonly pending = new Map<string, PendingSave>()
  private flushing = false

  constructor(private readonly storage: Storage) {}

  async load(did: string): Promise<{ result: IdentityResult; fetchedAt: number } | undefined> {
    const row = await this.storage.db.selectFrom('identity').selectAll().where('did', '=', did).executeTakeFirst()
    // The caller's `did` (equal to row.did) is the memory cache's key: reuse it rather than keep a second copy.
    return row ? rowToIdentity({ ...row, did }) : undefined
  }

  /**
   * Upserts; an older resolution never overwrites a newer one. Resolves once
   * the row is written. Saves arriving while a write is in flight go out
   * together in the next statement (group commit): a burst of new accounts
   * costs a few round trips, not one each.
   */
  save(result: IdentityResult, fetchedAt: number): Promise<void> {
    const row = identityToRow(result, fetchedAt)
    return new Promise<void>((resolve, reject) => {
      const waiter = { resolve, reject }
      const queued = this.pending.get(row.did)
      if (queued === undefined) {
        this.pending.set(row.did, { row, waiters: [waiter] })
      } else {
        if (queued.row.fetched_at <= row.fetched_at) queued.row = row
        queued.waiters.push(waiter)
      }
      if (!this.flushing) void this.flush()
    })
  }

  private async flush(): Promise<void> {
    this.flushing = true
    try {
      while (this.pending.size > 0) {
        const batch: PendingSave[] = []
        for (const [did, p] of this.pending) {
          batch.push(p)
          this.pending.delete(did)
          if (batch.length >= SAVE_BATCH) break
        }
        try {
          await this.upsert(batch.map((p) => p.row))
          for (const p of batch) for (const w of p.waiters) w.resolve()
        } catch (err) {
          for (const p of batch) for (const w of p.waiters) w.reject(err)
        }
      }
    } finally {
      this.flushing = false
    }
  }

  /** One statement of fixed text (one array per column), prepared once per connection: its cost does not grow with parameters. */
  private async upsert(rows: IdentityRowValues[]): Promise<void> {
    const column = <K extends keyof IdentityRowValues>(key: K) => rows.map((r) => r[key])
    await this.storage.executeRepeated(
      CompiledQuery.raw(UPSERT_IDENTITIES, [
        textArray(column('did')),
        textArray(column('status')),
        textArray(column('signing_key')),
        textArray(column('pds_endpoint')),
        textArray(column('handle')),
        textArray(column('error')),
        int8Array(rows.map((r) => r.fetched_at.getTime())),
      ]),
    )
  }
}
