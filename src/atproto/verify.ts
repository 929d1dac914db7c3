/**
 * Stateless verification of `#commit` and `#sync` bodies: the one entry point
 * ingest calls for every event (DESIGN.md §6, PROTOCOL.md §4.2 steps 1, 5
 * (future rev), 6–10, 12 and §4.4).
 *
 * It is a pure function of (decoded body, signing key, options), so it can run
 * inline or in a worker. Stateful checks (host authority, account status,
 * rev against the stored head, chain continuity) belong to the caller, which
 * tells us only whether a stored head exists.
 *
 * Never throws for bad input. Everything in the returned facts is copied out
 * of the frame, so the frame buffer can be released.
 */
import { BytesWrapper, CidLinkWrapper } from '@atcute/cbor'
import type { ReadonlyBlockMap } from './blocks.js'
import { readCarSlice } from './car.js'
import { CborLimitError } from './cbor-scan.js'
import { cidEquals, copyBytes } from './cid.js'
import { decodeCommit, isDagCborLink, verifyCommitSignature, type Commit } from './commit.js'
import type { DropReason } from './drop-reasons.js'
import { CarError, CommitError } from './errors.js'
import { isPlainMap } from './frame.js'
import type { PublicKey } from './keys.js'
import { MAX_COMMIT_BLOCKS_BYTES, MAX_COMMIT_OPS, MAX_FUTURE_REV_MS, MAX_RECORD_BYTES, MAX_SYNC_BLOCKS_BYTES } from './limits.js'
import { MstError, MstTree, collectionChanges, invertOnTree, mstLookup, normaliseOps, type CollectionChanges, type MstOp, type NormalOp } from './mst/index.js'
import { isValidDatetime, isValidDid, isValidRepoPath, isValidTid } from './syntax.js'
import { isRevTooFarInFuture } from './tid.js'

export type { DropReason }

export interface VerifyOptions {
  /** Strict (Sync 1.1) mode: op well-formedness, forward check, inversion and prevData presence are enforced. */
  strict: boolean
  /** Whether the relay already has a head for this account (prevData may be absent only when it has none). */
  hasStoredHead: boolean
  /** How far ahead of `nowMs` a rev may be; default 5 minutes. */
  maxFutureRevMs?: number
  /** The current time; default Date.now(). */
  nowMs?: number
}

export interface RepoOpFacts {
  action: 'create' | 'update' | 'delete'
  path: string
  cid: Uint8Array | null
  prev: Uint8Array | null
}

export interface CommitFacts {
  did: string
  rev: string
  since: string | null
  commitCid: Uint8Array
  dataCid: Uint8Array
  prevData: Uint8Array | null
  ops: RepoOpFacts[]
  /** Strict checks that failed but were tolerated in lenient mode (each reason once). */
  tolerated: DropReason[]
  /** Collections this commit adds to or empties from the repo (the listReposByCollection index). */
  collections: CollectionChanges
}

export interface SyncFacts {
  did: string
  rev: string
  commitCid: Uint8Array
  dataCid: Uint8Array
}

export type VerifyResult<T> = { ok: true; facts: T } | { ok: false; reason: DropReason; message: string }

/** Internal: a failed check, turned into a result at the entry points. */
class Drop extends Error {
  constructor(
    readonly reason: DropReason,
    message: string,
  ) {
    super(message)
  }
}

function drop(reason: DropReason, message: string): never {
  throw new Drop(reason, message)
}

function toResult<T>(run: () => T): VerifyResult<T> {
  try {
    return { ok: true, facts: run() }
  } catch (err) {
    if (err instanceof Drop) return { ok: false, reason: err.reason, message: err.message }
    if (err instanceof CarError) return { ok: false, reason: err.reason, message: err.message }
    if (err instanceof CommitError) return { ok: false, reason: 'bad-commit', message: err.message }
    if (err instanceof CborLimitError) return { ok: false, reason: err.reason, message: err.message }
    if (err instanceof MstError) return { ok: false, reason: mstReason(err), message: err.message }
    // Input reached a path no check anticipated: still a drop, never a crash.
    return { ok: false, reason: 'bad-commit', message: `unexpected verification error: ${(err as Error)?.message ?? String(err)}` }
  }
}

function mstReason(err: MstError): DropReason {
  return err.reason === 'missing-block' ? 'missing-block' : err.reason === 'bad-op' ? 'bad-op' : 'bad-mst'
}

/** Records strict-only failures: fatal in strict mode, collected in lenient mode. */
class StrictChecks {
  readonly tolerated: DropReason[] = []
  constructor(private readonly strict: boolean) {}

  fail(reason: DropReason, message: string): void {
    if (this.strict) drop(reason, message)
    if (!this.tolerated.includes(reason)) this.tolerated.push(reason)
  }
}

function requireBytes(body: Record<string, unknown>, field: string, max: number): Uint8Array {
  const value = body[field]
  if (!(value instanceof BytesWrapper)) drop('bad-frame', `${field} is missing or not bytes`)
  if (value.buf.length > max) drop('too-big', `${field} is ${value.buf.length} bytes, over ${max}`)
  return value.buf
}

function requireString(body: Record<string, unknown>, field: string, valid: (s: string) => boolean): string {
  const value = body[field]
  if (typeof value !== 'string') drop('bad-frame', `${field} is missing or not a string`)
  if (!valid(value)) drop('bad-syntax', `${field} ${JSON.stringify(value.slice(0, 100))} is not valid`)
  return value
}

function checkFutureRev(rev: string, options: VerifyOptions): void {
  const now = options.nowMs ?? Date.now()
  const max = options.maxFutureRevMs ?? MAX_FUTURE_REV_MS
  if (isRevTooFarInFuture(rev, now, max)) drop('future-rev', `rev ${rev} is more than ${max} ms in the future`)
}

/** CAR parse + hash checks, root = commit, commit decode + structure, did/rev match, signature. */
function checkCarAndCommit(
  blocksBytes: Uint8Array,
  expectedCommit: Uint8Array | null,
  did: string,
  rev: string,
  key: PublicKey,
): { blocks: ReadonlyBlockMap; commitCid: Uint8Array; commit: Commit } {
  const car = readCarSlice(blocksBytes)
  for (const [, bytes] of car.blocks.entries()) {
    if (bytes.length > MAX_RECORD_BYTES) drop('too-big', `a block of ${bytes.length} bytes is over ${MAX_RECORD_BYTES}`)
  }
  const root = car.roots[0]
  if (root === undefined) drop('bad-car', 'CAR has no root')
  if (expectedCommit !== null && !cidEquals(root, expectedCommit)) drop('bad-car', 'CAR root is not the commit CID')
  const commitBlock = car.blocks.get(root)
  if (commitBlock === undefined) drop('missing-block', 'commit block is not in the CAR')
  const commit = decodeCommit(commitBlock)
  if (commit.did !== did) drop('repo-mismatch', `commit did ${commit.did} differs from the event's ${did}`)
  if (commit.rev !== rev) drop('rev-mismatch', `commit rev ${commit.rev} differs from the event's ${rev}`)
  if (!verifyCommitSignature(commit, key)) drop('bad-signature', `commit signature does not verify with ${key.didKey}`)
  return { blocks: car.blocks, commitCid: root, commit }
}

const ACTIONS = new Set(['create', 'update', 'delete'])

/** Ops with checked types and path syntax (always enforced); shape rules are left to checkOpShapes. */
function readOps(raw: unknown): MstOp[] {
  if (!Array.isArray(raw)) drop('bad-frame', 'ops is missing or not an array')
  if (raw.length > MAX_COMMIT_OPS) drop('too-big', `${raw.length} ops, over ${MAX_COMMIT_OPS}`)
  const ops: MstOp[] = []
  for (const op of raw as unknown[]) {
    if (!isPlainMap(op)) drop('bad-frame', 'an op is not a map')
    const { action, path, cid, prev } = op
    if (typeof action !== 'string' || !ACTIONS.has(action)) drop('bad-op', `unknown op action ${JSON.stringify(action)}`)
    if (typeof path !== 'string') drop('bad-frame', 'op path is missing or not a string')
    if (!isValidRepoPath(path)) drop('bad-syntax', `op path ${JSON.stringify(path.slice(0, 100))} is not valid`)
    // `cid` is required-but-nullable and `prev` optional; absent and null mean the same here.
    if (cid !== undefined && cid !== null && !(cid instanceof CidLinkWrapper)) drop('bad-frame', `op cid for ${path} is not a CID link`)
    if (prev !== undefined && prev !== null && !(prev instanceof CidLinkWrapper)) drop('bad-frame', `op prev for ${path} is not a CID link`)
    ops.push({
      action: action as MstOp['action'],
      path,
      cid: cid instanceof CidLinkWrapper ? cid.bytes : null,
      prev: prev instanceof CidLinkWrapper ? prev.bytes : null,
    })
  }
  return ops
}

/** Sync 1.1 op shapes and unique paths (the inversion's own rules): the ops ready to invert, or null if one is ill-formed. */
function checkOpShapes(ops: MstOp[], checks: StrictChecks): NormalOp[] | null {
  try {
    return normaliseOps(ops)
  } catch (err) {
    if (!(err instanceof MstError)) throw err
    checks.fail('bad-op', err.message)
    return null
  }
}

/** Whether a create/update's record block is in the CAR; records a missing-block failure if not. */
function hasRecordBlock(blocks: ReadonlyBlockMap, path: string, cid: Uint8Array, checks: StrictChecks): boolean {
  if (blocks.has(cid)) return true
  checks.fail('missing-block', `record block for ${path} is not in the CAR`)
  return false
}

/** Each create/update's record block is in the CAR. */
function checkRecordBlocks(blocks: ReadonlyBlockMap, ops: MstOp[], checks: StrictChecks): void {
  for (const op of ops) if (op.cid !== null && op.action !== 'delete') hasRecordBlock(blocks, op.path, op.cid, checks)
}

/** Each create/update maps path → cid in the new tree, and its record block is present. */
function checkForward(dataCid: Uint8Array, blocks: ReadonlyBlockMap, ops: MstOp[], checks: StrictChecks): void {
  for (const op of ops) {
    if (op.action === 'delete' || op.cid === null || !hasRecordBlock(blocks, op.path, op.cid, checks)) continue
    let found: Uint8Array | null
    try {
      found = mstLookup(dataCid, blocks, op.path)
    } catch (err) {
      if (!(err instanceof MstError)) throw err
      checks.fail(mstReason(err), `forward check of ${op.path}: ${err.message}`)
      continue
    }
    if (!cidEquals(found, op.cid)) checks.fail('bad-op', `${op.path} does not map to the op's cid in the new tree`)
  }
}

/** Inversion against prevData; returns the commit's collection changes, read from the new tree before it is inverted. */
function checkInversion(
  dataCid: Uint8Array,
  prevData: Uint8Array,
  blocks: ReadonlyBlockMap,
  ops: readonly NormalOp[],
  rawOps: readonly MstOp[],
  checks: StrictChecks,
): CollectionChanges | undefined {
  let reproduced: boolean
  let collections: CollectionChanges | undefined
  try {
    if (ops.length === 0) reproduced = cidEquals(dataCid, prevData)
    else {
      const tree = MstTree.load(dataCid, blocks)
      // The same tree: the nodes the decision opens on the deleted keys' paths are the ones the inversion needs.
      collections = collectionChanges(tree, blocks, rawOps)
      // The reference PDS may have left the previous tree under an untrimmed top (mst/untrimmed-top.ts).
      reproduced = cidEquals(invertOnTree(tree, ops), prevData) || tree.hasUntrimmedForm(prevData)
    }
  } catch (err) {
    if (!(err instanceof MstError)) throw err
    checks.fail(mstReason(err), `inversion: ${err.message}`)
    return collections
  }
  if (!reproduced) checks.fail('inversion-mismatch', 'inverting the ops does not reproduce prevData')
  return collections
}

function copyOp(op: MstOp): RepoOpFacts {
  return {
    action: op.action,
    path: op.path,
    cid: op.cid === null ? null : copyBytes(op.cid),
    prev: op.prev === null ? null : copyBytes(op.prev),
  }
}

export function verifyCommitEvent(body: Record<string, unknown>, key: PublicKey, options: VerifyOptions): VerifyResult<CommitFacts> {
  return toResult(() => {
    const checks = new StrictChecks(options.strict)

    // 1. schema, syntax and sizes
    const repo = requireString(body, 'repo', isValidDid)
    const rev = requireString(body, 'rev', isValidTid)
    const sinceValue = body.since
    if (sinceValue !== undefined && sinceValue !== null && typeof sinceValue !== 'string') drop('bad-frame', 'since is not a string')
    const since = typeof sinceValue === 'string' ? sinceValue : null
    if (since !== null && !isValidTid(since)) drop('bad-syntax', `since ${JSON.stringify(since.slice(0, 100))} is not a TID`)
    requireString(body, 'time', isValidDatetime)
    const commitLink = body.commit
    if (!isDagCborLink(commitLink)) drop('bad-frame', 'commit is missing or not a dag-cbor CID link')
    const prevDataValue = body.prevData
    if (prevDataValue !== undefined && prevDataValue !== null && !isDagCborLink(prevDataValue)) {
      drop('bad-frame', 'prevData is not a dag-cbor CID link')
    }
    const prevData = isDagCborLink(prevDataValue) ? prevDataValue.bytes : null
    for (const flag of ['rebase', 'tooBig'] as const) {
      const value = body[flag]
      if (value !== undefined && typeof value !== 'boolean') drop('bad-frame', `${flag} is not a boolean`)
      if (value === true) checks.fail('deprecated-flag', `${flag} is set`)
    }
    const blocksBytes = requireBytes(body, 'blocks', MAX_COMMIT_BLOCKS_BYTES)
    const ops = readOps(body.ops)

    // 5. future rev (replays are the caller's, it holds the stored rev)
    checkFutureRev(rev, options)

    // 6–7. CAR, commit, signature
    const { blocks, commitCid, commit } = checkCarAndCommit(blocksBytes, commitLink.bytes, repo, rev, key)

    // 8–10. ops, forward check, inversion
    const normalised = checkOpShapes(ops, checks)
    let collections: CollectionChanges | undefined
    // Ill-formed ops (tolerated in lenient mode) cannot be inverted; that failure is already recorded.
    if (prevData !== null && normalised !== null) {
      // Inverting a create/update already checks that the new tree maps its path to its cid,
      // so the forward check reduces to the record blocks being present.
      checkRecordBlocks(blocks, ops, checks)
      collections = checkInversion(commit.data, prevData, blocks, normalised, ops, checks)
    } else {
      checkForward(commit.data, blocks, ops, checks)
    }
    if (prevData === null && options.hasStoredHead) {
      checks.fail('missing-prevdata', 'prevData is absent although the account has a stored head')
    }

    return {
      did: repo,
      rev,
      since,
      commitCid: copyBytes(commitCid),
      dataCid: copyBytes(commit.data),
      prevData: prevData === null ? null : copyBytes(prevData),
      ops: ops.map(copyOp),
      tolerated: checks.tolerated,
      // From the new tree, which the signed commit names: sound even where a lenient check was tolerated.
      collections: collections ?? collectionChanges(commit.data, blocks, ops),
    }
  })
}

export function verifySyncEvent(body: Record<string, unknown>, key: PublicKey, options: VerifyOptions): VerifyResult<SyncFacts> {
  return toResult(() => {
    const did = requireString(body, 'did', isValidDid)
    const rev = requireString(body, 'rev', isValidTid)
    requireString(body, 'time', isValidDatetime)
    const blocksBytes = requireBytes(body, 'blocks', MAX_SYNC_BLOCKS_BYTES)
    checkFutureRev(rev, options)
    const { commitCid, commit } = checkCarAndCommit(blocksBytes, null, did, rev, key)
    return { did, rev, commitCid: copyBytes(commitCid), dataCid: copyBytes(commit.data) }
  })
}
