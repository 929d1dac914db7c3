/**
 * Account rows and repo heads, read through a bounded in-memory LRU.
 *
 * Every change that touches a host's `account_count` runs in one transaction
 * with it: creating an account, moving it to another host, and an upstream
 * deletion (or un-deletion). Deleted accounts do not count toward the limit.
 * Heads are written by the sequencer in its batch transaction; ingest mirrors
 * them here as soon as the sequencer has taken the event (it commits in that
 * order or not at all), and the account stays the one answer for its DID
 * until those events have committed (`setUncommittedHead`), since the database
 * still has the older head.
 */
import { sql, type Kysely, type Transaction } from 'kysely'
import { LRUCache } from 'lru-cache'
import { cidEquals } from '../atproto/cid.js'
import { configDefault } from '../config.js'
import type { Storage } from '../storage/db.js'
import type { AccountHead, Database, LocalAccountStatus, UpstreamAccountStatus } from '../storage/types.js'

export interface AccountState {
  id: number
  did: string
  hostId: number
  localStatus: LocalAccountStatus
  upstreamStatus: UpstreamAccountStatus
  /** When the upstream status was last reported or confirmed (ms), null if never. */
  upstreamCheckedAt: number | null
  head: AccountHead | null
}

export interface AccountStoreOptions {
  storage: Storage
  /** Accounts kept in memory (default 100,000). */
  cacheSize?: number
}

/** Whether an account with this upstream status counts toward its host's account limit. */
export function countsTowardLimit(upstream: string): boolean {
  return upstream !== 'deleted'
}

type Trx = Transaction<Database>

export class AccountStore {
  private readonly storage: Storage
  private readonly cache: LRUCache<string, AccountState>
  /** Accounts with events taken by the sequencer and not committed yet, and how many. */
  private readonly uncommitted = new Map<string, { acct: AccountState; events: number }>()

  constructor(opts: AccountStoreOptions) {
    this.storage = opts.storage
    this.cache = new LRUCache({ max: opts.cacheSize ?? configDefault('accountCacheSize') })
  }

  get cachedCount(): number {
    return this.cache.size
  }

  /** The cached account for `did`, without a database read (undefined: not in memory). Counts as a use for the LRU, as `get` does. */
  inMemory(did: string): AccountState | undefined {
    return this.uncommitted.get(did)?.acct ?? this.cache.get(did)
  }

  /** The account for `did`, or undefined if the relay has never accepted it. */
  async get(did: string): Promise<AccountState | undefined> {
    const hit = this.inMemory(did)
    if (hit !== undefined) return hit
    const row = await this.storage.db
      .selectFrom('account as a')
      .leftJoin('account_head as h', 'h.account_id', 'a.id')
      .select([
        'a.id',
        'a.did',
        'a.host_id',
        'a.local_status',
        'a.upstream_status',
        'a.upstream_checked_at',
        'h.rev',
        'h.commit_cid',
        'h.data_cid',
      ])
      .where('a.did', '=', did)
      .executeTakeFirst()
    if (row === undefined) return undefined
    const state: AccountState = {
      id: row.id,
      did, // the key's own string (equal to row.did): one copy per cached account, not two
      hostId: row.host_id,
      localStatus: row.local_status,
      upstreamStatus: row.upstream_status,
      upstreamCheckedAt: row.upstream_checked_at === null ? null : new Date(row.upstream_checked_at).getTime(),
      head: row.rev !== null && row.commit_cid !== null && row.data_cid !== null ? packHead(row.rev, row.commit_cid, row.data_cid) : null,
    }
    this.cache.set(did, state)
    return state
  }

  /**
   * Creates the account on `hostId` and counts it, atomically. It is created
   * `throttled` when the host already has `account_limit` accounts.
   *
   * One statement rather than a transaction of four: the host row is locked
   * (so concurrent creations cannot overshoot the limit) only while the
   * statement runs, not across round trips, and a burst of new accounts (a
   * newly crawled host) costs one round trip each.
   */
  async create(did: string, hostId: number): Promise<AccountState> {
    const { rows } = await sql<{ id: number; local_status: LocalAccountStatus }>`
      WITH h AS (
        SELECT id, account_count >= account_limit AS full FROM host WHERE id = ${hostId} FOR UPDATE
      ), ins AS (
        INSERT INTO account (did, host_id, local_status, upstream_status)
        SELECT ${did}, h.id, CASE WHEN h.full THEN 'throttled' ELSE 'active' END, 'active' FROM h
        ON CONFLICT (did) DO NOTHING
        RETURNING id, local_status
      ), counted AS (
        UPDATE host SET account_count = account_count + 1, updated_at = now()
        WHERE id = ${hostId} AND EXISTS (SELECT 1 FROM ins)
      )
      SELECT id, local_status FROM ins`.execute(this.storage.db)
    const created = rows[0] && { id: Number(rows[0].id), localStatus: rows[0].local_status }
    if (created === undefined) {
      this.cache.delete(did)
      // Created meanwhile elsewhere: read that one.
      const existing = await this.get(did)
      if (existing === undefined) throw new Error(`account ${did} not created: host ${hostId} does not exist`)
      return existing
    }
    const state: AccountState = {
      id: created.id,
      did,
      hostId,
      localStatus: created.localStatus,
      upstreamStatus: 'active',
      upstreamCheckedAt: null,
      head: null,
    }
    this.cache.set(did, state)
    return state
  }

  /** Ties the account to `toHostId`; both hosts' counts change in the same transaction. */
  async move(acct: AccountState, toHostId: number): Promise<void> {
    const from = acct.hostId
    if (from === toHostId) return
    await this.storage.db.transaction().execute(async (trx) => {
      await trx.updateTable('account').set({ host_id: toHostId }).where('id', '=', acct.id).execute()
      if (countsTowardLimit(acct.upstreamStatus)) {
        await adjustCount(trx, from, -1)
        await adjustCount(trx, toHostId, 1)
      }
    })
    acct.hostId = toHostId
  }

  /** Stores the status the host reported; a deletion (or its reversal) changes the host's count in the same transaction. */
  async setUpstreamStatus(acct: AccountState, status: UpstreamAccountStatus, nowMs = Date.now()): Promise<void> {
    if (status === 'active' && acct.upstreamStatus === 'active') {
      // Nothing to store: the check time only matters for a non-active status (see requireActive).
      acct.upstreamCheckedAt = nowMs
      return
    }
    const before = countsTowardLimit(acct.upstreamStatus)
    const after = countsTowardLimit(status)
    const checkedAt = new Date(nowMs)
    const update = (db: Kysely<Database>) =>
      db.updateTable('account').set({ upstream_status: status, upstream_checked_at: checkedAt }).where('id', '=', acct.id).execute()
    if (before === after) {
      // The count is unchanged: one statement, no transaction round trips.
      await update(this.storage.db)
    } else {
      await this.storage.db.transaction().execute(async (trx) => {
        await update(trx)
        await adjustCount(trx, acct.hostId, after ? 1 : -1)
      })
    }
    acct.upstreamStatus = status
    acct.upstreamCheckedAt = nowMs
  }

  /** Records that the upstream status was re-checked (unchanged), so the next check waits. */
  async markChecked(acct: AccountState, nowMs = Date.now()): Promise<void> {
    await this.storage.db.updateTable('account').set({ upstream_checked_at: new Date(nowMs) }).where('id', '=', acct.id).execute()
    acct.upstreamCheckedAt = nowMs
  }

  async setLocalStatus(acct: AccountState, status: LocalAccountStatus): Promise<void> {
    await this.storage.db.updateTable('account').set({ local_status: status }).where('id', '=', acct.id).execute()
    acct.localStatus = status
  }

  /**
   * The sequencer has taken an event of `acct` that sets `head` and that the database does not
   * have yet: the head is mirrored here at once, and `acct` answers for its DID (cache eviction or
   * a retry's `forget` cannot bring back the database's older head, which would let a
   * retransmitted event through as new) until `releaseUncommitted` has been called once for each.
   */
  setUncommittedHead(acct: AccountState, head: AccountHead): void {
    acct.head = packHead(head.rev, head.commitCid, head.dataCid)
    const entry = this.uncommitted.get(acct.did)
    if (entry !== undefined && entry.acct === acct) entry.events++
    else this.uncommitted.set(acct.did, { acct, events: 1 })
  }

  /** One event of `setUncommittedHead` has committed, or never will. */
  releaseUncommitted(acct: AccountState): void {
    const entry = this.uncommitted.get(acct.did)
    if (entry !== undefined && entry.acct === acct && --entry.events === 0) this.uncommitted.delete(acct.did)
  }

  /** Accounts with events not committed yet (tests read it). */
  get uncommittedCount(): number {
    return this.uncommitted.size
  }

  /**
   * After a limit raise: activates throttled accounts of `hostId` in arrival
   * order (account id) until the host's non-throttled accounts reach its
   * limit. Returns the DIDs activated.
   */
  async releaseThrottled(hostId: number): Promise<string[]> {
    const released = await this.storage.db.transaction().execute(async (trx) => {
      const host = await trx.selectFrom('host').select(['account_limit', 'account_count']).where('id', '=', hostId).forUpdate().executeTakeFirst()
      if (host === undefined) return []
      // The host's counted accounts that are not throttled: account_count (every account but deleted ones, kept in the
      // same transactions as the accounts) less the throttled ones, which the partial index account_throttled_idx
      // finds without reading the host's other accounts (counting those read all 500,000 of a big host: 2.3 s under the host lock).
      const throttled = await trx
        .selectFrom('account')
        .select(sql<number>`count(*)::int`.as('n'))
        .where('host_id', '=', hostId)
        .where('local_status', '=', 'throttled')
        .where('upstream_status', '!=', 'deleted')
        .executeTakeFirstOrThrow()
      const room = host.account_limit - (host.account_count - Number(throttled.n))
      if (room <= 0) return []
      const rows = await trx
        .selectFrom('account')
        .select(['id', 'did'])
        .where('host_id', '=', hostId)
        .where('local_status', '=', 'throttled')
        .where('upstream_status', '!=', 'deleted')
        .orderBy('id')
        .limit(room)
        .forUpdate()
        .execute()
      if (rows.length === 0) return []
      await trx
        .updateTable('account')
        .set({ local_status: 'active' })
        .where(
          'id',
          'in',
          rows.map((r) => r.id),
        )
        .execute()
      return rows
    })
    for (const r of released) {
      const cached = this.cache.get(r.did)
      if (cached !== undefined) cached.localStatus = 'active'
    }
    return released.map((r) => r.did)
  }

  /** Drops the cached copy (the next `get` reads the database). */
  forget(did: string): void {
    this.cache.delete(did)
  }
}

/**
 * A cached head in compact form. Two small Uint8Arrays cost ~250 B of heap each (typed array +
 * array buffer objects); both CIDs as one latin1 string cost ~90 B. The packed copy also never
 * pins the 8 KB Buffer-pool slab that pg's bytea values are sliced from. Reads of the CIDs are
 * rare (the continuity check), so they are rebuilt on access.
 */
class PackedHead implements AccountHead {
  constructor(
    readonly rev: string,
    /** commitCid ‖ dataCid, one char per byte. */
    private readonly cids: string,
    private readonly commitLength: number,
  ) {}

  get commitCid(): Uint8Array {
    return latin1Bytes(this.cids, 0, this.commitLength)
  }

  get dataCid(): Uint8Array {
    return latin1Bytes(this.cids, this.commitLength, this.cids.length)
  }

  /** dataCid equals `cid`, compared in place (the continuity check runs for every #commit). */
  dataCidEquals(cid: Uint8Array): boolean {
    const start = this.commitLength
    if (this.cids.length - start !== cid.length) return false
    for (let i = 0; i < cid.length; i++) if (this.cids.charCodeAt(start + i) !== cid[i]) return false
    return true
  }
}

/** Whether `head`'s data CID is `cid` (null: none given). */
export function headDataIs(head: AccountHead, cid: Uint8Array | null): boolean {
  if (cid === null) return false
  return head instanceof PackedHead ? head.dataCidEquals(cid) : cidEquals(head.dataCid, cid)
}

function packHead(rev: string, commitCid: Uint8Array, dataCid: Uint8Array): AccountHead {
  const both = Buffer.allocUnsafe(commitCid.length + dataCid.length)
  both.set(commitCid, 0)
  both.set(dataCid, commitCid.length)
  return new PackedHead(rev, both.toString('latin1'), commitCid.length)
}

function latin1Bytes(s: string, start: number, end: number): Uint8Array {
  const out = new Uint8Array(end - start)
  for (let i = start; i < end; i++) out[i - start] = s.charCodeAt(i)
  return out
}

async function adjustCount(trx: Trx, hostId: number, delta: 1 | -1): Promise<void> {
  await trx
    .updateTable('host')
    .set({ account_count: sql`greatest(account_count + ${delta}, 0)`, updated_at: sql`now()` })
    .where('id', '=', hostId)
    .execute()
}
