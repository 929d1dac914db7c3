/**
 * The com.atproto.sync query methods a relay answers, current and 2023.
 * Data the relay keeps (heads, statuses, hosts, the event log) is answered from
 * Postgres; repo data it does not keep is a 302 to the account's PDS, after the
 * relay's own account checks.
 */
import { sql } from 'kysely'
import { combinedStatus, type CombinedStatus } from '../atproto/account-status.js'
import { cidEquals, cidFromString, cidToString } from '../atproto/cid.js'
import type { RateLimitedView } from '../crawler/rate-limit-episode.js'
import type { HostStats } from '../stats/host-stats.js'
import { findAccountWithHost, type AccountWithHost } from '../storage/account-row.js'
import type { Storage } from '../storage/db.js'
import { EventKind } from '../storage/types.js'
import type { Handler, HttpServer, RequestContext } from './http-server.js'
import { Params } from '../http/params.js'
import type { QueryGate } from './query-gate.js'
import { XrpcError, invalidRequest } from '../atproto/xrpc-error.js'

const NS = 'com.atproto.sync.'

export interface SyncQueryDeps {
  /** The query pool (never the ingest pool): possibly a read replica, so answers may trail ingest by the replica's lag. */
  storage: Storage
  /** Bounds concurrent queries to the query pool; absent: unbounded (tests of the queries alone). */
  gate?: QueryGate
  /** Per-host event counters for getHostStatus (optional: absent in a relay without ingest). */
  stats?: HostStats
  /** Hosts held back by their rate limits now, by hostname (absent in a relay without a crawler). */
  rateLimitedHosts?: () => ReadonlyMap<string, RateLimitedView>
}

/**
 * The lexicon's hostStatus for a host: the stored status, except that an active
 * host held back by its hourly or daily rate limit is `throttled` (a known
 * hostStatus value) while that lasts. Per-second pacing, routine while a host
 * catches up, shows only in getHostStatus's `rateLimited`.
 */
export function lexiconHostStatus(stored: string, rateLimited: RateLimitedView | null | undefined): string {
  return stored === 'active' && rateLimited && rateLimited.window !== 'perSecond' ? 'throttled' : stored
}

export function registerSyncQueries(http: HttpServer, deps: SyncQueryDeps): void {
  const { db } = deps.storage
  const { gate } = deps
  const query = (nsid: string, handler: Handler) =>
    http.query(nsid, gate ? (ctx) => gate.run(nsid, async () => handler(ctx)) : handler)

  const findAccount = (did: string) => findAccountWithHost(db, did)

  async function requireAccount(did: string): Promise<AccountWithHost> {
    const account = await findAccount(did)
    if (!account) throw new XrpcError(404, 'RepoNotFound', `Could not find repo for DID: ${did}`)
    return account
  }

  /** Refuses an account that is not active, with the lexicon error for its status. */
  function requireActive(account: AccountWithHost): void {
    const status = combinedStatus(account.local_status, account.upstream_status)
    if (status.active) return
    throw inactiveError(account.did, status)
  }

  const pdsUrl = (account: AccountWithHost, nsid: string, query: URLSearchParams) =>
    `${account.ssl ? 'https' : 'http'}://${account.hostname}/xrpc/${nsid}?${query.toString()}`

  // ---- heads and statuses -------------------------------------------------

  query(NS + 'getLatestCommit', async ({ params }) => {
    const did = Params.query(params).required('did', 'did')
    const account = await requireAccount(did)
    requireActive(account)
    if (!account.rev || !account.commit_cid)
      throw new XrpcError(404, 'RepoNotSynchronized', `The relay has not yet seen a commit for ${did}`)
    return { json: { cid: cidToString(account.commit_cid), rev: account.rev } }
  })

  query(NS + 'getHead', async ({ params }) => {
    const did = Params.query(params).required('did', 'did')
    const account = await findAccount(did)
    if (!account || !account.commit_cid) throw new XrpcError(404, 'HeadNotFound', `No head for repo: ${did}`)
    requireActive(account)
    return { json: { root: cidToString(account.commit_cid) } }
  })

  query(NS + 'getRepoStatus', async ({ params }) => {
    const did = Params.query(params).required('did', 'did')
    const account = await requireAccount(did)
    const status = combinedStatus(account.local_status, account.upstream_status)
    return {
      json: {
        did: account.did,
        active: status.active,
        ...(status.status ? { status: status.status } : {}),
        ...(status.active && account.rev ? { rev: account.rev } : {}),
      },
    }
  })

  query(NS + 'listRepos', async ({ params }) => {
    const p = Params.query(params)
    const limit = p.integer('limit', { min: 1, max: 1000, default: 500 })
    const after = p.cursor()
    // Ordered by account id: ids only grow, so accounts added while a client pages appear at the end, never shifting pages.
    // The cursor bounds both sides of the join: Postgres does not carry `account.id > n` over to account_head, and its
    // merge join then read every head below the cursor, so page time grew with it (18 s at 9 M of 10 M accounts).
    const rows = await db
      .selectFrom('account')
      .innerJoin('account_head', 'account_head.account_id', 'account.id')
      .select(['account.id', 'account.did', 'account.local_status', 'account.upstream_status', 'account_head.rev', 'account_head.commit_cid'])
      .where('account.id', '>', after ?? 0)
      .where('account_head.account_id', '>', after ?? 0)
      .orderBy('account.id')
      .limit(limit + 1)
      .execute()
    const [page, next] = splitPage(rows, limit)
    return {
      json: {
        ...next,
        repos: page.map((r) => {
          const status = combinedStatus(r.local_status, r.upstream_status)
          return {
            did: r.did,
            head: cidToString(r.commit_cid),
            rev: r.rev,
            active: status.active,
            ...(status.status ? { status: status.status } : {}),
          }
        }),
      },
    }
  })

  // ---- hosts -------------------------------------------------------------

  query(NS + 'listHosts', async ({ params }) => {
    const p = Params.query(params)
    const limit = p.integer('limit', { min: 1, max: 1000, default: 200 })
    const after = p.cursor()
    // Host ids follow first_seen: oldest first, stable under concurrent admissions.
    const rows = await db
      .selectFrom('host')
      .select(['id', 'hostname', 'cursor', 'account_count', 'status'])
      .where('id', '>', after ?? 0)
      .orderBy('id')
      .limit(limit + 1)
      .execute()
    const [page, next] = splitPage(rows, limit)
    const rateLimited = deps.rateLimitedHosts?.()
    return {
      json: {
        ...next,
        hosts: page.map((h) => ({ hostname: h.hostname, seq: h.cursor, accountCount: h.account_count, status: lexiconHostStatus(h.status, rateLimited?.get(h.hostname)) })),
      },
    }
  })

  query(NS + 'getHostStatus', async ({ params }) => {
    const hostname = Params.query(params).required('hostname', 'hostname').trim().toLowerCase()
    const host = await db.selectFrom('host').selectAll().where('hostname', '=', hostname).executeTakeFirst()
    if (!host) throw new XrpcError(404, 'HostNotFound', `Host not known to this relay: ${hostname}`)
    const throttled = await db
      .selectFrom('account')
      .select((eb) => eb.fn.countAll<number>().as('n'))
      .where('host_id', '=', host.id)
      .where('local_status', '=', 'throttled')
      .executeTakeFirstOrThrow()
    const events = deps.stats?.snapshot(host.hostname)
    const rateLimited = deps.rateLimitedHosts?.().get(host.hostname)
    return {
      json: {
        hostname: host.hostname,
        seq: host.cursor,
        accountCount: host.account_count,
        status: lexiconHostStatus(host.status, rateLimited),
        // additive fields for operators and PDS admins: why events are (not) flowing
        accountLimit: host.account_limit,
        throttledAccounts: Number(throttled.n),
        ...(rateLimited ? { rateLimited } : {}),
        trusted: host.trusted,
        ...(host.lenient !== null ? { lenient: host.lenient } : {}),
        firstSeen: new Date(host.first_seen).toISOString(),
        ...(events
          ? { events: { received: events.received, accepted: events.accepted, dropped: events.dropped, discontinuities: events.discontinuities }, lastEventAt: events.lastEventAt }
          : {}),
        ...(host.last_error
          ? { lastError: { message: host.last_error, at: host.last_error_at ? new Date(host.last_error_at).toISOString() : null } }
          : events?.lastError
            ? { lastError: events.lastError }
            : {}),
      },
    }
  })

  // ---- repo data: redirected to the authoritative PDS ---------------------

  const redirect =
    (target: string, validate: (p: Params) => void) =>
    async ({ params }: RequestContext) => {
      const p = Params.query(params)
      const did = p.required('did', 'did')
      validate(p)
      const account = await requireAccount(did)
      requireActive(account)
      return { redirect: pdsUrl(account, target, params) }
    }

  query(NS + 'getRepo', redirect(NS + 'getRepo', (p) => p.optional('since', 'tid')))
  query(NS + 'getRecord', redirect(NS + 'getRecord', (p) => (p.required('collection', 'nsid'), p.required('rkey', 'record-key'))))
  query(NS + 'getBlocks', redirect(NS + 'getBlocks', (p) => p.list('cids', 'cid', { required: true })))
  query(NS + 'getBlob', redirect(NS + 'getBlob', (p) => p.required('cid', 'cid')))
  query(
    NS + 'listBlobs',
    redirect(NS + 'listBlobs', (p) => {
      p.optional('since', 'tid')
      p.integer('limit', { min: 1, max: 1000, default: 500 })
      p.optional('cursor')
    }),
  )
  // 2023: getCheckout returned the whole repo; today that is getRepo (without the removed `commit` param).
  query(NS + 'getCheckout', async ({ params }) => {
    const p = Params.query(params)
    const did = p.required('did', 'did')
    p.optional('commit', 'cid')
    const account = await requireAccount(did)
    requireActive(account)
    return { redirect: pdsUrl(account, NS + 'getRepo', new URLSearchParams({ did })) }
  })

  // 2023: the account's commit path, from the event log (the relay keeps the replay window, not history).
  query(NS + 'getCommitPath', async ({ params }) => {
    const p = Params.query(params)
    const did = p.required('did', 'did')
    const latest = p.optional('latest', 'cid')
    const earliest = p.optional('earliest', 'cid')
    const account = await requireAccount(did)
    requireActive(account)
    const rows = await db
      .selectFrom('event')
      .select(['commit_cid'])
      .where('account_id', '=', account.id)
      .where('kind', 'in', [EventKind.commit, EventKind.sync])
      .where(sql<boolean>`commit_cid is not null`)
      .orderBy('seq')
      .execute()
    let commits = rows.map((r) => r.commit_cid!)
    if (earliest) commits = commits.slice(indexInWindow(commits, earliest, 'earliest'))
    if (latest) commits = commits.slice(0, indexInWindow(commits, latest, 'latest') + 1)
    return { json: { commits: commits.map(cidToString) } }
  })
}

/** A page fetched with `limit + 1` rows, and the cursor field for the next page when that extra row came back. */
function splitPage<T extends { id: number }>(rows: T[], limit: number): [page: T[], next: { cursor?: string }] {
  if (rows.length <= limit) return [rows, {}]
  const page = rows.slice(0, limit)
  return [page, { cursor: String(page[page.length - 1]!.id) }]
}

function indexInWindow(commits: Uint8Array[], cid: string, which: 'earliest' | 'latest'): number {
  const target = cidFromString(cid)
  const i = commits.findIndex((c) => cidEquals(c, target))
  if (i < 0) throw invalidRequest(`${which} commit ${cid} is not within the relay's replay window`)
  return i
}

function inactiveError(did: string, status: CombinedStatus): XrpcError {
  switch (status.status) {
    case 'takendown':
      return new XrpcError(403, 'RepoTakendown', `Repo has been taken down: ${did}`)
    case 'suspended':
      return new XrpcError(403, 'RepoSuspended', `Repo has been suspended: ${did}`)
    case 'deactivated':
      return new XrpcError(403, 'RepoDeactivated', `Repo has been deactivated: ${did}`)
    case 'deleted':
      return new XrpcError(404, 'RepoNotFound', `Repo has been deleted: ${did}`)
    default:
      return new XrpcError(403, 'RepoInactive', `Repo is not active (${status.status ?? 'inactive'}): ${did}`)
  }
}
