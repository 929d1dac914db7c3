/**
 * #identity and #account, and the relay's own #account emissions.
 *
 * #identity always makes the relay re-resolve the DID (so a migration's new
 * document is picked up at once), but it is forwarded only when the fresh
 * document names this host: otherwise any host could make the relay emit
 * identity events for any DID. It is then dropped (`wrong-host`), known DID or
 * not. Its `handle` is kept only when it verifies both ways.
 *
 * #account is taken only from the authoritative host, stored as the upstream
 * status and re-emitted with the relay's combined view.
 */
import { encode } from '@atcute/cbor'
import { combinedStatus, upstreamStatusOf } from '../atproto/account-status.js'
import type { MessageFrame } from '../atproto/frame.js'
import { isValidDatetime } from '../atproto/syntax.js'
import type { UpstreamAccountStatus } from '../storage/types.js'
import type { AccountState } from './accounts.js'
import { accountOnHost, isHostOf, requireAuthority } from './authority.js'
import type { IngestContext } from './context.js'
import type { UpstreamTicket } from '../sequencer/host-cursors.js'
import { IngestDrop, unresolvedIdentity, type UpstreamHost } from './types.js'

function requireTime(body: Record<string, unknown>): string {
  const time = body.time
  if (typeof time !== 'string') throw new IngestDrop('bad-frame', 'time is missing or not a string')
  if (!isValidDatetime(time)) throw new IngestDrop('bad-syntax', `time ${JSON.stringify(time.slice(0, 40))} is not a datetime`)
  return time
}

function upstream(ticket: UpstreamTicket | null) {
  return ticket !== null ? { ticket } : {}
}

export async function handleIdentityEvent(
  ctx: IngestContext,
  host: UpstreamHost,
  frame: MessageFrame,
  ticket: UpstreamTicket | null,
  did: string,
  /** Called once the sequencer has the event: the DID's next event may start. */
  taken: () => void,
): Promise<void> {
  const upstreamSeq = ticket?.seq ?? null
  requireTime(frame.body)
  // The re-resolve bypasses caches: a DID that just moved here is authoritative at once.
  const identity = await ctx.identity.refresh(did)
  const handle = frame.body.handle
  let handleCheck: Promise<boolean> | undefined
  let acct: AccountState
  if (identity.status === 'ok') {
    if (!isHostOf(identity, host)) {
      throw new IngestDrop('wrong-host', `#identity for ${did}, which is hosted at ${identity.pdsHost}, not ${host.hostname}`)
    }
    // The handle's round trips run beside the account's read or creation (a new account's first
    // event waits for both); only once this host is known to be the DID's, so no host can make the
    // relay look up handles for DIDs it does not host. Awaited below; the catch only keeps a drop
    // meanwhile from leaving it unhandled.
    if (typeof handle === 'string') {
      handleCheck = ctx.identity.verifyHandle(did, handle)
      handleCheck.catch(() => undefined)
    }
    acct = await accountOnHost(ctx, host, did)
  } else {
    // A tombstoned DID no longer resolves; the host it was stored on may still announce it.
    const known = identity.status === 'failed' ? undefined : await ctx.accounts.get(did)
    if (known === undefined || known.hostId !== host.id) throw unresolvedIdentity(did, identity)
    acct = known
  }

  let body = frame.bodyBytes
  if (handle !== undefined) {
    const keep = typeof handle === 'string' && (await (handleCheck ?? ctx.identity.verifyHandle(did, handle)))
    if (!keep) {
      const { handle: _omitted, ...rest } = frame.body
      body = encode(rest)
    }
  }
  const committed = ctx.sequencer.take({ accountId: acct.id, did, kind: 'identity', t: '#identity', body, ...upstream(ticket) })
  taken()
  await committed
  ctx.stats.accepted(host.hostname, 'identity')
}

export async function handleAccountEvent(
  ctx: IngestContext,
  host: UpstreamHost,
  frame: MessageFrame,
  ticket: UpstreamTicket | null,
  did: string,
  /** Called once the sequencer has the event: the DID's next event may start. */
  taken: () => void,
): Promise<void> {
  const upstreamSeq = ticket?.seq ?? null
  const time = requireTime(frame.body)
  const { active, status } = frame.body
  if (typeof active !== 'boolean') throw new IngestDrop('bad-frame', 'active is missing or not a boolean')
  if (status !== undefined && typeof status !== 'string') throw new IngestDrop('bad-frame', 'status is not a string')

  let acct: AccountState
  try {
    await requireAuthority(ctx, host, did)
    acct = await accountOnHost(ctx, host, did)
  } catch (err) {
    // A tombstoned DID no longer resolves; its stored host may still report the deletion.
    const known = err instanceof IngestDrop && err.reason === 'no-identity' ? await ctx.accounts.get(did) : undefined
    if (known === undefined || known.hostId !== host.id) throw err
    acct = known
  }

  const reported = upstreamStatusOf(active, status) as UpstreamAccountStatus
  if (active === false && (status === undefined || reported === 'inactive')) {
    ctx.logger.warn({ host: host.hostname, did, seq: upstreamSeq, status }, '#account inactive without a known status')
  }
  const before = acct.upstreamStatus
  await ctx.accounts.setUpstreamStatus(acct, reported, ctx.now())
  if (before !== reported) ctx.logger.info({ host: host.hostname, did, seq: upstreamSeq, before, status: reported }, 'upstream account status')

  const seq = typeof frame.body.seq === 'number' ? frame.body.seq : 0
  const committed = ctx.sequencer.take({
    accountId: acct.id,
    did,
    kind: 'account',
    t: '#account',
    body: accountBody(acct, seq, time),
    // A deleted account's pairs leave the listReposByCollection index with this event.
    ...(reported === 'deleted' ? { collections: { removeAll: true } } : {}),
    ...upstream(ticket),
  })
  taken()
  await committed
  ctx.stats.accepted(host.hostname, 'account')
}

/** An `#account` body with the relay's combined status (a local takedown overrides upstream active). */
export function accountBody(acct: AccountState, seq: number, time: string): Uint8Array {
  const combined = combinedStatus(acct.localStatus, acct.upstreamStatus)
  const body: Record<string, unknown> = { seq, did: acct.did, time, active: combined.active }
  if (combined.status !== undefined) body.status = combined.status
  return encode(body)
}

/** The relay's own #account after a local status change (takedown, restore, release from throttling). */
export async function emitLocalAccountEvent(ctx: IngestContext, acct: AccountState): Promise<number> {
  return ctx.sequencer.submit({
    accountId: acct.id,
    did: acct.did,
    kind: 'account',
    t: '#account',
    body: accountBody(acct, 0, new Date(ctx.now()).toISOString()),
  })
}
