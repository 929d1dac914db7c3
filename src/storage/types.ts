/**
 * Kysely table types, mirroring schema.sql (which is the source of truth).
 * int8 columns are parsed to JS numbers by both dialects (every value stays below 2^53).
 */
import type { ColumnType, Generated, Selectable } from 'kysely'

type Timestamp = ColumnType<Date, Date | string | undefined, Date | string>

export type HostStatus = 'active' | 'idle' | 'offline' | 'throttled' | 'banned'
export type LocalAccountStatus = 'active' | 'takendown' | 'throttled'
export type UpstreamAccountStatus =
  | 'active'
  | 'deactivated'
  | 'deleted'
  | 'suspended'
  | 'takendown'
  | 'desynchronized'
  | 'throttled'
  | 'inactive'
export type IdentityStatus = 'ok' | 'not_found' | 'no_key' | 'no_pds' | 'failed'

/** `event.kind` values. */
export const EventKind = { commit: 1, sync: 2, identity: 3, account: 4 } as const
export type EventKindCode = (typeof EventKind)[keyof typeof EventKind]

export interface SchemaVersionTable {
  version: number
  applied_at: Timestamp
}

export interface HostTable {
  id: Generated<number>
  hostname: string
  ssl: ColumnType<boolean, boolean | undefined, boolean>
  status: ColumnType<HostStatus, HostStatus | undefined, HostStatus>
  cursor: ColumnType<number, number | undefined, number>
  account_limit: number
  trusted: ColumnType<boolean, boolean | undefined, boolean>
  account_count: ColumnType<number, number | undefined, number>
  lenient: boolean | null
  last_error: string | null
  last_error_at: Date | string | null
  first_seen: Timestamp
  updated_at: Timestamp
}

export interface AccountTable {
  id: Generated<number>
  did: string
  host_id: number
  local_status: ColumnType<LocalAccountStatus, LocalAccountStatus | undefined, LocalAccountStatus>
  upstream_status: ColumnType<UpstreamAccountStatus, UpstreamAccountStatus | undefined, UpstreamAccountStatus>
  upstream_checked_at: Date | string | null
  created_at: Timestamp
}

/**
 * An account's repo head, the one shape for it everywhere (ingest's cache, the
 * sequencer's event and its batched write; stored as an account_head row): the
 * last accepted rev, its commit CID and the MST root (data) CID.
 */
export interface AccountHead {
  rev: string
  commitCid: Uint8Array
  dataCid: Uint8Array
}

export interface AccountHeadTable {
  account_id: number
  rev: string
  commit_cid: Uint8Array
  data_cid: Uint8Array
}

export interface EventTable {
  seq: number
  account_id: number
  kind: EventKindCode
  frame: Uint8Array
  commit_cid: Uint8Array | null
  received_at: Timestamp
  /** When the sequencer assigned the seq, unix µs, increasing with seq (Jetstream's cursor); null before migrate:3. */
  time_us: ColumnType<number | null, number | null | undefined, number | null>
}

export interface DomainBanTable {
  domain: string
  created_at: Timestamp
}

export interface IdentityTable {
  did: string
  status: IdentityStatus
  signing_key: string | null
  pds_endpoint: string | null
  handle: string | null
  error: string | null
  fetched_at: Timestamp
}

export interface RelayStateTable {
  key: string
  value: ColumnType<unknown, string, string>
  updated_at: Timestamp
}

/** listReposByCollection: an account with at least one record in a collection (schema.sql migrate:2). */
export interface RepoCollectionTable {
  collection_id: number
  account_id: number
}

/** Collection NSIDs, each stored once (repo_collection refers to them by id). */
export interface CollectionTable {
  id: Generated<number>
  nsid: string
}

/** Accounts whose collections are to be (re)read from their PDS. */
export interface CollectionBackfillTable {
  account_id: number
  reason: 'sync' | 'retry'
  attempts: Generated<number>
  due_at: Timestamp
  last_error: string | null
}

export interface Database {
  schema_version: SchemaVersionTable
  host: HostTable
  account: AccountTable
  account_head: AccountHeadTable
  event: EventTable
  domain_ban: DomainBanTable
  identity: IdentityTable
  relay_state: RelayStateTable
  collection: CollectionTable
  repo_collection: RepoCollectionTable
  collection_backfill: CollectionBackfillTable
}

export type Host = Selectable<HostTable>
export type Account = Selectable<AccountTable>
export type IdentityRow = Selectable<IdentityTable>
