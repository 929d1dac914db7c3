/**
 * Admin operations on accounts: the account view, takedown, restore and the
 * takedown list. Status changes go through ingest so each is emitted as an
 * `#account` event in the DID's order.
 */
import { AdminError, type AdminAccount } from '../api/admin/controls.js'
import { cidToString } from '../atproto/cid.js'
import type { Firehose } from '../firehose/index.js'
import { IngestError, type IngestPipeline } from '../ingest/index.js'
import { findAccountWithHost } from '../storage/account-row.js'
import type { Storage } from '../storage/db.js'

export interface AdminAccountsDeps {
  storage: Storage
  ingest: Pick<IngestPipeline, 'accountStatus' | 'takedown' | 'restore'>
  firehose: Pick<Firehose, 'forgetAccount'>
}

export class AdminAccounts {
  constructor(private readonly deps: AdminAccountsDeps) {}

  async view(did: string): Promise<AdminAccount | null> {
    const row = await findAccountWithHost(this.deps.storage.db, did)
    if (!row) return null
    const status = await this.deps.ingest.accountStatus(did)
    const combined = status?.combined ?? { active: false }
    return {
      did: row.did,
      hostname: row.hostname,
      localStatus: row.local_status,
      upstreamStatus: row.upstream_status,
      active: combined.active,
      ...(combined.status ? { status: combined.status } : {}),
      rev: row.rev,
      head: row.commit_cid ? cidToString(row.commit_cid) : null,
    }
  }

  async takedown(did: string): Promise<void> {
    const before = await this.deps.ingest.accountStatus(did)
    if (!before) throw repoNotFound(did)
    // Ingest purges the account's events from the event log and then emits the
    // takedown #account; the in-memory replay ring is cleared first, so that
    // notice stays replayable for consumers that saw the earlier events.
    this.deps.firehose.forgetAccount(before.accountId)
    await localStatusChange(() => this.deps.ingest.takedown(did), did)
  }

  async restore(did: string): Promise<void> {
    await localStatusChange(() => this.deps.ingest.restore(did), did)
  }

  async listTakedowns(): Promise<string[]> {
    const rows = await this.deps.storage.db.selectFrom('account').select('did').where('local_status', '=', 'takendown').orderBy('id').execute()
    return rows.map((r) => r.did)
  }
}

async function localStatusChange<T>(fn: () => Promise<T>, did: string): Promise<T> {
  try {
    return await fn()
  } catch (err) {
    if (err instanceof IngestError && err.reason === 'unknown-account') throw repoNotFound(did)
    throw err
  }
}

function repoNotFound(did: string): AdminError {
  return new AdminError(404, 'RepoNotFound', `account not known to this relay: ${did}`)
}
