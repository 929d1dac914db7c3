/**
 * #commit and #sync: cheap pre-checks, authority, status gate, replay check,
 * verification (with one forced identity refresh on a bad signature), chain
 * continuity, then the body goes to the sequencer unchanged with the new head.
 */
import type { MessageFrame } from '../atproto/frame.js'
import { MAX_COMMIT_BLOCKS_BYTES, MAX_COMMIT_OPS, MAX_SYNC_BLOCKS_BYTES } from '../atproto/limits.js'
import { isValidTid } from '../atproto/syntax.js'
import type { ResolvedIdentity } from '../identity/did-doc.js'
import type { AccountHead } from '../storage/types.js'
import { headDataIs } from './accounts.js'
import { accountOnHost, isHostOf, requireActive, requireAuthority } from './authority.js'
import { collectionDelta } from './collections.js'
import type { IngestContext } from './context.js'
import type { UpstreamTicket } from '../sequencer/host-cursors.js'
import { IngestDrop, unresolvedIdentity, type UpstreamHost } from './types.js'
import type { VerifyKind, VerifyOutcome } from './verify-runner.js'

/** Size and syntax checks that need no lookup, so junk costs nothing. Returns the rev. */
export function precheckRepoEvent(kind: VerifyKind, frame: MessageFrame): string {
  const rev = frame.body.rev
  if (typeof rev !== 'string') throw new IngestDrop('bad-frame', 'rev is missing or not a string')
  if (!isValidTid(rev)) throw new IngestDrop('bad-syntax', `rev ${JSON.stringify(rev.slice(0, 40))} is not a TID`)
  const blocks = frame.sizes?.blocks
  if (blocks === undefined) throw new IngestDrop('bad-frame', 'blocks is missing or not bytes')
  const maxBlocks = kind === 'commit' ? MAX_COMMIT_BLOCKS_BYTES : MAX_SYNC_BLOCKS_BYTES
  if (blocks > maxBlocks) throw new IngestDrop('too-big', `blocks is ${blocks} bytes, over ${maxBlocks}`)
  if (kind === 'commit') {
    const ops = frame.sizes?.ops
    if (ops === undefined) throw new IngestDrop('bad-frame', 'ops is missing or not an array')
    if (ops > MAX_COMMIT_OPS) throw new IngestDrop('too-big', `${ops} ops, over ${MAX_COMMIT_OPS}`)
  }
  return rev
}

export async function handleRepoEvent(
  ctx: IngestContext,
  kind: VerifyKind,
  host: UpstreamHost,
  frame: MessageFrame,
  ticket: UpstreamTicket | null,
  did: string,
  /** Called once the sequencer has the event: the DID's next event may start. */
  taken: () => void,
): Promise<void> {
  const upstreamSeq = ticket?.seq ?? null
  const rev = precheckRepoEvent(kind, frame)
  // Each step answers synchronously when its state is in memory; awaiting only real promises
  // saves a microtask turn per step for almost every event.
  const authority = requireAuthority(ctx, host, did)
  const identity = authority instanceof Promise ? await authority : authority
  const onHost = accountOnHost(ctx, host, did)
  const acct = onHost instanceof Promise ? await onHost : onHost
  const active = requireActive(ctx, host, acct)
  if (active instanceof Promise) await active

  // Replays and retransmissions: silent, counted.
  if (acct.head !== null && rev <= acct.head.rev) {
    throw new IngestDrop('duplicate', `rev ${rev} is not newer than the stored ${acct.head.rev}`)
  }

  const lenient = host.lenient ?? ctx.lenient
  const outcome = await verifyWithRefresh(ctx, kind, host, frame, identity, !lenient, acct.head !== null)
  if (!outcome.ok) throw new IngestDrop(outcome.reason, outcome.message)
  if (outcome.tolerated.length > 0) {
    for (const reason of outcome.tolerated) ctx.metrics.tolerated.inc({ reason })
    ctx.logger.warn({ host: host.hostname, did, seq: upstreamSeq, tolerated: outcome.tolerated }, 'lenient: forwarding despite strict-mode failures')
  }

  const discontinuous = kind === 'commit' && acct.head !== null && isDiscontinuous(acct.head, outcome)
  if (discontinuous) {
    ctx.stats.discontinuity(host.hostname)
    ctx.logger.info(
      { host: host.hostname, did, seq: upstreamSeq, since: outcome.since, storedRev: acct.head?.rev },
      'discontinuous commit forwarded (since/prevData differ from the stored head)',
    )
  }

  const head: AccountHead = { rev: outcome.rev, commitCid: outcome.commitCid, dataCid: outcome.dataCid }
  const collections = collectionDelta(kind, outcome, ctx.metrics.collectionsUndecided, discontinuous)
  const committed = ctx.sequencer.take({
    accountId: acct.id,
    did,
    kind,
    t: frame.t,
    body: frame.bodyBytes,
    head,
    ...(collections !== undefined ? { collections } : {}),
    ...(ticket !== null ? { ticket } : {}),
  })
  // Taken: it commits in order or not at all, so the account's next event is checked against it now.
  ctx.accounts.setUncommittedHead(acct, head)
  taken()
  try {
    await committed
  } finally {
    ctx.accounts.releaseUncommitted(acct)
  }
  ctx.stats.accepted(host.hostname, kind)
}

function isDiscontinuous(stored: AccountHead, outcome: Extract<VerifyOutcome, { ok: true }>): boolean {
  return outcome.since !== stored.rev || !headDataIs(stored, outcome.prevData)
}

/**
 * Verifies with the cached key; a bad signature forces one identity refresh
 * (the key may have rotated) and one retry with the fresh key, never a skip.
 */
async function verifyWithRefresh(
  ctx: IngestContext,
  kind: VerifyKind,
  host: UpstreamHost,
  frame: MessageFrame,
  identity: ResolvedIdentity,
  strict: boolean,
  hasStoredHead: boolean,
): Promise<VerifyOutcome> {
  const options = { strict, hasStoredHead, maxFutureRevMs: ctx.maxFutureRevMs, nowMs: ctx.now() }
  const seconds = ctx.metrics.verifySeconds[kind]
  const run = async (key: ResolvedIdentity['signingKey']) => {
    const started = performance.now()
    try {
      return await ctx.verifier.verify({ kind, bodyBytes: frame.bodyBytes, key, options })
    } finally {
      seconds.observe((performance.now() - started) / 1000)
    }
  }
  const first = await run(identity.signingKey)
  if (first.ok || first.reason !== 'bad-signature') return first
  const fresh = await ctx.identity.resolve(identity.did, { forceRefresh: true })
  if (fresh.status !== 'ok') throw unresolvedIdentity(identity.did, fresh)
  if (!isHostOf(fresh, host)) throw new IngestDrop('wrong-host', `${identity.did} is now hosted at ${fresh.pdsHost}`)
  return run(fresh.signingKey)
}
