/**
 * Generates one host's share of the corpus: its accounts (real keys, real
 * did:plc genesis ops naming the host's fixed URL), and its firehose — every
 * account's events interleaved at random, per-account order preserved, seqs
 * 1..n as a PDS sequencer would assign them.
 */
import { join } from 'node:path'
import { encodeEventFrame, type PdsEvent } from '../../test/helpers/frames.js'
import { importKeypair } from '../../test/helpers/fast-keys.js'
import { followRecord, likeRecord, postRecord, profileRecord, repostRecord, Rng, type StrongRef } from '../../test/helpers/records.js'
import { TestAccount, type CommitEvent, type WriteSpec } from '../../test/helpers/repo-builder.js'
import type { CorpusParams } from './params.js'
import { hostFileNames, writeAccountsFile, writeFramesFile, type CorpusAccount, type CorpusEventCounts, type CorpusHost } from './store.js'

const BATCH_SIZE = 25
const PROFILE_PATH = 'app.bsky.actor.profile/self'
const POST = 'app.bsky.feed.post'

interface AccountPlan {
  index: number
  account: TestAccount
  /** Remaining actions, in order; the first is always 'genesis'. */
  actions: ('genesis' | 'batch' | 'normal')[]
  next: number
  commits: number
  deactivated: boolean
}

export interface HostProgress {
  host: number
  events: number
  commits: number
}

export function hostUrl(params: CorpusParams, host: number): string {
  return `http://localhost:${params.basePort + host}`
}

/** Account indexes of a host: round-robin, so deep accounts (the lowest indexes) land on different hosts. */
export function hostAccountIndexes(params: CorpusParams, host: number): number[] {
  const out: number[] = []
  for (let i = host; i < params.accounts; i += params.hosts) out.push(i)
  return out
}

export async function generateHost(
  params: CorpusParams,
  host: number,
  dir: string,
  rotationKeyHex: string,
  onProgress?: (p: HostProgress) => void,
): Promise<CorpusHost> {
  const rotationKey = importKeypair('secp256k1', Buffer.from(rotationKeyHex, 'hex'))
  const url = hostUrl(params, host)
  const plans: AccountPlan[] = []
  for (const index of hostAccountIndexes(params, host)) {
    const arng = new Rng(params.seed * 1_000_003 + index)
    const keyType = arng.chance(params.p256Share) ? 'p256' : 'secp256k1'
    const account = await TestAccount.create({ keyType, rotationKey, handle: `user${index}.test`, pdsUrl: url })
    const normal = Math.max(1, Math.round(-params.commitsPerAccount * Math.log(1 - arng.next())))
    const batches = index < params.deepAccounts ? Math.ceil(params.deepRecords / BATCH_SIZE) : 0
    const actions: AccountPlan['actions'] = ['genesis']
    for (let b = 0; b < batches; b++) actions.push('batch')
    for (let n = 0; n < normal; n++) actions.push('normal')
    plans.push({ index, account, actions, next: 0, commits: 0, deactivated: false })
  }

  // One token per action, shuffled: a uniform interleaving that keeps each account's order.
  const rng = new Rng(params.seed * 7919 + host)
  const tokens: number[] = []
  plans.forEach((plan, i) => {
    for (let k = 0; k < plan.actions.length; k++) tokens.push(i)
  })
  for (let i = tokens.length - 1; i > 0; i--) {
    const j = rng.int(i + 1)
    ;[tokens[i], tokens[j]] = [tokens[j] as number, tokens[i] as number]
  }

  const frames: Uint8Array[] = []
  const counts: CorpusEventCounts = { commit: 0, sync: 0, identity: 0, account: 0 }
  const recentPosts: StrongRef[] = []
  const publish = (events: PdsEvent[]) => {
    for (const e of events) {
      frames.push(encodeEventFrame(e, frames.length + 1))
      counts[e.t.slice(1) as keyof CorpusEventCounts]++
    }
  }
  const rememberPost = (did: string, event: CommitEvent) => {
    for (const op of event.meta.ops) {
      if (op.action === 'create' && op.path.startsWith(POST + '/') && op.cid) {
        if (recentPosts.length >= 500) recentPosts[rng.int(500)] = { uri: `at://${did}/${op.path}`, cid: op.cid.toString() }
        else recentPosts.push({ uri: `at://${did}/${op.path}`, cid: op.cid.toString() })
      }
    }
  }

  for (const t of tokens) {
    const plan = plans[t] as AccountPlan
    const action = plan.actions[plan.next++]
    const acct = plan.account
    if (action === 'genesis') {
      publish(await acct.genesis())
      continue
    }
    if (action === 'batch') {
      const writes: WriteSpec[] = []
      for (let i = 0; i < BATCH_SIZE; i++) writes.push(createWrite(rng, acct, recentPosts, plans))
      const event = await acct.commit(writes)
      rememberPost(acct.did, event)
      publish([event])
      plan.commits++
      continue
    }
    if (plan.deactivated) {
      publish(await acct.activationEvents())
      plan.deactivated = false
      continue
    }
    const r = rng.next()
    if (r < 0.015) {
      const { event } = await acct.changeHandle(`user${plan.index}-${plan.next}.test`)
      publish([event])
      continue
    }
    if (r < 0.02) {
      publish([acct.accountEvent(false, 'deactivated')])
      plan.deactivated = true
      continue
    }
    const event = await acct.commit(commitWrites(rng, acct, recentPosts, plans))
    rememberPost(acct.did, event)
    publish([event])
    plan.commits++
    if (frames.length % 500 === 0) onProgress?.({ host, events: frames.length, commits: counts.commit })
  }

  const names = hostFileNames(host)
  const bytes = writeFramesFile(join(dir, names.framesFile), frames)
  const accounts: CorpusAccount[] = plans.map((plan) => {
    const a = plan.account
    const out: CorpusAccount = {
      did: a.did,
      host,
      handle: a.handle,
      keyType: a.keyType,
      signingKey: a.signingKey.did(),
      head: a.head.toString(),
      rev: a.rev,
      active: !plan.deactivated,
      records: a.recordCount,
      commits: plan.commits,
      plcOps: a.plcOps,
    }
    if (plan.deactivated) out.status = 'deactivated'
    return out
  })
  writeAccountsFile(join(dir, names.accountsFile), accounts)
  onProgress?.({ host, events: frames.length, commits: counts.commit })
  return {
    index: host,
    port: params.basePort + host,
    url,
    hostname: `localhost:${params.basePort + host}`,
    ...names,
    frames: frames.length,
    bytes,
    accounts: accounts.length,
    records: accounts.reduce((n, a) => n + a.records, 0),
    events: counts,
  }
}

function now(): string {
  return new Date().toISOString()
}

function someoneElse(rng: Rng, plans: AccountPlan[]): string {
  return (rng.pick(plans) as AccountPlan).account.did
}

function target(rng: Rng, recentPosts: StrongRef[], acct: TestAccount): StrongRef {
  if (recentPosts.length > 0) return rng.pick(recentPosts)
  return { uri: `at://${acct.did}/${POST}/3jzfcijpj2z2a`, cid: 'bafyreihvrjfjsrl5ikl2csp2u5i2uyhzxhb3e4qpiqx4f3rzbalbofiz3e' }
}

/** A single create of the realistic mix: posts (some replies, with facets), likes, follows, reposts. */
function createWrite(rng: Rng, acct: TestAccount, recentPosts: StrongRef[], plans: AccountPlan[]): WriteSpec {
  const r = rng.next()
  if (r < 0.35) {
    const replyTo = rng.chance(0.3) && recentPosts.length > 0 ? rng.pick(recentPosts) : undefined
    const record = postRecord(rng, now(), {
      replyTo: replyTo ? { root: replyTo, parent: replyTo } : undefined,
      mentionDid: someoneElse(rng, plans),
    })
    return { action: 'create', collection: POST, record }
  }
  if (r < 0.7) return { action: 'create', collection: 'app.bsky.feed.like', record: likeRecord(target(rng, recentPosts, acct), now()) }
  if (r < 0.85) return { action: 'create', collection: 'app.bsky.graph.follow', record: followRecord(someoneElse(rng, plans), now()) }
  return { action: 'create', collection: 'app.bsky.feed.repost', record: repostRecord(target(rng, recentPosts, acct), now()) }
}

/** ~10% updates, ~5% deletes, ~5% multi-op commits, the rest single creates. */
function commitWrites(rng: Rng, acct: TestAccount, recentPosts: StrongRef[], plans: AccountPlan[]): WriteSpec[] {
  const paths = acct.recordPaths
  const hasProfile = paths.includes(PROFILE_PATH)
  if (!hasProfile && rng.chance(0.5)) return [{ action: 'create', collection: 'app.bsky.actor.profile', rkey: 'self', record: profileRecord(rng) }]
  const c = rng.next()
  if (c < 0.1 && paths.length > 0) {
    const path = rng.pick(paths)
    if (path.startsWith(POST + '/')) return [{ action: 'update', path, record: postRecord(rng, now()) }]
    if (hasProfile) return [{ action: 'update', path: PROFILE_PATH, record: profileRecord(rng) }]
  }
  if (c >= 0.1 && c < 0.15 && paths.length > 1) {
    const path = rng.pick(paths)
    if (path !== PROFILE_PATH) return [{ action: 'delete', path }]
  }
  if (c >= 0.15 && c < 0.2) {
    const n = 2 + rng.int(4)
    return Array.from({ length: n }, () => createWrite(rng, acct, recentPosts, plans))
  }
  return [createWrite(rng, acct, recentPosts, plans)]
}
