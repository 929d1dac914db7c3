/** The one account ⋈ host ⋈ head read, shared by the sync query API and the admin account view. */
import type { Kysely } from 'kysely'
import type { Database, LocalAccountStatus, UpstreamAccountStatus } from './types.js'

/** An account with its host and its head (rev and commit null until the relay accepted a commit). */
export interface AccountWithHost {
  id: number
  did: string
  local_status: LocalAccountStatus
  upstream_status: UpstreamAccountStatus
  hostname: string
  ssl: boolean
  rev: string | null
  commit_cid: Uint8Array | null
}

export async function findAccountWithHost(db: Kysely<Database>, did: string): Promise<AccountWithHost | undefined> {
  return db
    .selectFrom('account')
    .innerJoin('host', 'host.id', 'account.host_id')
    .leftJoin('account_head', 'account_head.account_id', 'account.id')
    .select([
      'account.id',
      'account.did',
      'account.local_status',
      'account.upstream_status',
      'host.hostname',
      'host.ssl',
      'account_head.rev',
      'account_head.commit_cid',
    ])
    .where('account.did', '=', did)
    .executeTakeFirst()
}
