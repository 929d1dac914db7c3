/**
 * The stateful checks shared by the event types: host authority (the DID
 * document names this host as the PDS), the account row that goes with it
 * (created or moved only on the authoritative host's word), and the status
 * gate for #commit/#sync.
 */
import { upstreamStatusOf } from '../atproto/account-status.js'
import type { ResolvedIdentity } from '../identity/did-doc.js'
import type { UpstreamAccountStatus } from '../storage/types.js'
import type { AccountState } from './accounts.js'
import type { IngestContext } from './context.js'
import { IngestDrop, unresolvedIdentity, type UpstreamHost } from './types.js'

export function isHostOf(identity: ResolvedIdentity, host: UpstreamHost): boolean {
  return identity.pdsHost === host.hostname.toLowerCase()
}

/**
 * The DID's identity, if its document names `host` as the PDS. A cached
 * answer that disagrees (or failed) is re-resolved once, bypassing caches,
 * before the event is rejected: `wrong-host` or `no-identity` (a failed lookup,
 * as opposed to a definitive answer, is retried by the pipeline).
 */
export function requireAuthority(ctx: IngestContext, host: UpstreamHost, did: string): ResolvedIdentity | Promise<ResolvedIdentity> {
  // The common case answers at once: no promise for an identity already in memory.
  const inMemory = ctx.identity.cached(did)
  if (inMemory !== undefined && inMemory.status === 'ok' && isHostOf(inMemory, host)) return inMemory
  return requireAuthorityLookup(ctx, host, did, inMemory !== undefined)
}

/** `cachedDisagrees`: memory already answered, and not with this host: straight to the forced refresh. */
async function requireAuthorityLookup(ctx: IngestContext, host: UpstreamHost, did: string, cachedDisagrees: boolean): Promise<ResolvedIdentity> {
  if (!cachedDisagrees) {
    const cached = await ctx.identity.resolve(did)
    if (cached.status === 'ok' && isHostOf(cached, host)) return cached
  }
  const fresh = await ctx.identity.resolve(did, { forceRefresh: true })
  if (fresh.status !== 'ok') throw unresolvedIdentity(did, fresh)
  if (!isHostOf(fresh, host)) throw new IngestDrop('wrong-host', `${did} is hosted at ${fresh.pdsHost}, not ${host.hostname}`)
  return fresh
}

/**
 * The account of `did` on the authoritative `host` (the caller checked
 * authority): created here if new (throttled past the host's limit), or
 * moved here from its previous host.
 */
export function accountOnHost(ctx: IngestContext, host: UpstreamHost, did: string): AccountState | Promise<AccountState> {
  // A cached account already on this host is the common case: answered without a promise.
  const inMemory = ctx.accounts.inMemory(did)
  if (inMemory !== undefined && inMemory.hostId === host.id) return inMemory
  return accountOnHostLookup(ctx, host, did)
}

async function accountOnHostLookup(ctx: IngestContext, host: UpstreamHost, did: string): Promise<AccountState> {
  const existing = await ctx.accounts.get(did)
  if (existing === undefined) {
    const created = await ctx.accounts.create(did, host.id)
    ctx.metrics.accounts.inc({ event: created.localStatus === 'throttled' ? 'created-throttled' : 'created' })
    if (created.localStatus === 'throttled') {
      ctx.logger.warn({ host: host.hostname, did, accountId: created.id }, 'new account throttled: host is at its account limit')
    } else {
      ctx.logger.debug({ host: host.hostname, did, accountId: created.id }, 'new account')
    }
    return created
  }
  if (existing.hostId !== host.id) {
    const from = existing.hostId
    await ctx.accounts.move(existing, host.id)
    ctx.metrics.accounts.inc({ event: 'moved' })
    ctx.logger.info({ host: host.hostname, did, accountId: existing.id, fromHostId: from }, 'account moved to this host')
  }
  return existing
}

function isStale(ctx: IngestContext, acct: AccountState): boolean {
  return acct.upstreamCheckedAt === null || ctx.now() - acct.upstreamCheckedAt >= ctx.statusRecheckMs
}

/**
 * #commit/#sync only flow for accounts active both locally and upstream. A
 * stale non-active upstream status is confirmed with the host first.
 */
export function requireActive(ctx: IngestContext, host: UpstreamHost, acct: AccountState): void | Promise<void> {
  if (acct.localStatus === 'takendown') throw new IngestDrop('takendown', `${acct.did} is taken down by the relay`)
  if (acct.localStatus === 'throttled') throw new IngestDrop('throttled', `${acct.did} is throttled (host account limit)`)
  if (acct.upstreamStatus === 'active') return
  return requireActiveUpstream(ctx, host, acct)
}

/** Not active upstream: a stale status is confirmed with the host before the event is dropped. */
async function requireActiveUpstream(ctx: IngestContext, host: UpstreamHost, acct: AccountState): Promise<void> {
  if (ctx.repoStatusCheck !== undefined && isStale(ctx, acct)) {
    const seen = await ctx.repoStatusCheck(host, acct.did)
    if (seen === null) {
      await ctx.accounts.markChecked(acct, ctx.now())
    } else {
      const status = upstreamStatusOf(seen.active, seen.status) as UpstreamAccountStatus
      const before = acct.upstreamStatus
      await ctx.accounts.setUpstreamStatus(acct, status, ctx.now())
      if (status !== before) ctx.logger.info({ host: host.hostname, did: acct.did, before, status }, 'upstream status re-checked with getRepoStatus')
      if (status === 'active') return
    }
  }
  throw new IngestDrop('inactive', `${acct.did} is ${acct.upstreamStatus} upstream`)
}
