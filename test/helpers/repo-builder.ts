/**
 * Real signed repos and the firehose events a Sync 1.1 PDS emits for them,
 * built in-process with @atproto/repo. One `TestAccount` = one DID (a real
 * did:plc derived from its signed genesis op), one signing key, one repo.
 *
 * Every method returns unsequenced `PdsEvent`s; a fake PDS (or
 * `encodeEventFrame`) assigns `seq`. Hostile variants pass `apply: false`
 * so the account's real state does not move.
 */
import type { Keypair } from '@atproto/crypto'
import {
  BlockMap,
  DataDiff,
  MST,
  MemoryBlockstore,
  Repo,
  blocksToCarFile,
  signCommit,
  type CommitData,
} from '@atproto/repo'
import * as plc from '@did-plc/lib'
import { generateKeypair, type KeyType } from './fast-keys.js'
import { bytes, link, type PdsEvent } from './frames.js'
import { nextTid } from './tid.js'

export type CID = CommitData['cid']
export { generateKeypair, type KeyType }
export type AccountStatus = 'takendown' | 'suspended' | 'deleted' | 'deactivated' | 'desynchronized' | 'throttled'

export type WriteSpec =
  | { action: 'create'; collection: string; rkey?: string; record: Record<string, unknown> }
  | { action: 'update'; path: string; record: Record<string, unknown> }
  | { action: 'delete'; path: string }

export interface RepoOpInfo {
  action: 'create' | 'update' | 'delete'
  path: string
  cid: CID | null
  prev?: CID
}

export interface CommitEvent extends PdsEvent {
  t: '#commit'
  meta: { rev: string; since: string | null; commit: CID; data: CID; prevData: CID | null; ops: RepoOpInfo[] }
}

export interface CommitOptions {
  /** Force the rev (replayed / future rev tests). Default: a fresh TID above the current rev. */
  rev?: string
  /** Sign with this key instead of the account's (forged signature). */
  signWith?: Keypair
  /** Advance the account's repo to this commit (default true). */
  apply?: boolean
  /** Put this DID in `body.repo` instead of the account's (wrong repo). */
  repoField?: string
  /** Leave `prevData` out (pre-Sync-1.1 PDS). */
  omitPrevData?: boolean
  /** Send only the new blocks, not the covering proofs (breaks inversion). */
  omitProofBlocks?: boolean
  /**
   * Start from the tree loaded from storage, as the reference PDS does for every write
   * (`Repo.load`). By default the in-memory tree of the previous commit is reused, which
   * remembers more (an emptied root keeps its layer: see src/atproto/mst/untrimmed-top.ts).
   */
  fromStorage?: boolean
}

export interface CreateAccountOptions {
  keyType?: KeyType
  signingKey?: Keypair
  /** PLC rotation key; default a fresh secp256k1 key. */
  rotationKey?: Keypair
  handle?: string
  /** The PDS endpoint written in the DID document, e.g. `http://localhost:1234`. */
  pdsUrl?: string
}

let handleCounter = 0

export class TestAccount {
  readonly did: string
  handle: string
  readonly keyType: KeyType
  signingKey: Keypair
  readonly rotationKey: Keypair
  pdsUrl: string
  /** Signed PLC operations, oldest first (re-POST them to a fresh PLC to restore the DID). */
  readonly plcOps: plc.Operation[]
  readonly storage = new MemoryBlockstore()
  private repoState: Repo | null = null
  private readonly paths: string[] = []
  private readonly pathIndex = new Map<string, number>()

  private constructor(did: string, handle: string, keyType: KeyType, signingKey: Keypair, rotationKey: Keypair, pdsUrl: string, genesisOp: plc.Operation) {
    this.did = did
    this.handle = handle
    this.keyType = keyType
    this.signingKey = signingKey
    this.rotationKey = rotationKey
    this.pdsUrl = pdsUrl
    this.plcOps = [genesisOp]
  }

  /** Builds keys and the PLC genesis op locally (no network); the DID follows from the op. */
  static async create(opts: CreateAccountOptions = {}): Promise<TestAccount> {
    const keyType = opts.keyType ?? (opts.signingKey?.jwtAlg === 'ES256' ? 'p256' : 'secp256k1')
    const signingKey = opts.signingKey ?? generateKeypair(keyType)
    const rotationKey = opts.rotationKey ?? generateKeypair('secp256k1')
    const handle = opts.handle ?? `user${process.pid}x${++handleCounter}.test`
    const pdsUrl = opts.pdsUrl ?? 'http://localhost'
    const { op, did } = await plc.createOp({
      signingKey: signingKey.did(),
      handle,
      pds: pdsUrl,
      rotationKeys: [rotationKey.did()],
      signer: rotationKey,
    })
    return new TestAccount(did, handle, keyType, signingKey, rotationKey, pdsUrl, op)
  }

  get repo(): Repo {
    if (!this.repoState) throw new Error(`account ${this.did} has no repo yet: call genesis() first`)
    return this.repoState
  }
  get hasRepo(): boolean {
    return this.repoState !== null
  }
  get rev(): string {
    return this.repo.commit.rev
  }
  get head(): CID {
    return this.repo.cid
  }
  get dataCid(): CID {
    return this.repo.commit.data
  }
  /** Paths (`collection/rkey`) of the records currently in the repo. */
  get recordPaths(): readonly string[] {
    return this.paths
  }
  get recordCount(): number {
    return this.paths.length
  }

  /** Account creation as a PDS sequences it: `#identity`, `#account` active, genesis `#commit` (no ops, no prevData), `#sync`. */
  async genesis(): Promise<PdsEvent[]> {
    if (this.repoState) throw new Error(`account ${this.did} already has a repo`)
    const time = new Date().toISOString()
    const init = await Repo.formatInitCommit(this.storage, this.did, this.signingKey, [], nextTid())
    this.repoState = await Repo.createFromCommit(this.storage, init)
    const commitEvent: PdsEvent = {
      t: '#commit',
      body: {
        rebase: false,
        tooBig: false,
        repo: this.did,
        commit: link(init.cid),
        rev: init.rev,
        since: null,
        blocks: bytes(await blocksToCarFile(init.cid, init.newBlocks)),
        ops: [],
        blobs: [],
        time,
      },
    }
    return [this.identityEvent(undefined, time), this.accountEvent(true, undefined, time), commitEvent, await this.syncEvent(time)]
  }

  /** One `#commit` with any mix of creates, updates and deletes. */
  async commit(writes: WriteSpec | WriteSpec[], opts: CommitOptions = {}): Promise<CommitEvent> {
    const list = Array.isArray(writes) ? writes : [writes]
    if (list.length === 0) throw new Error('commit needs at least one write')
    const repo = this.repo
    const leaves = new BlockMap()
    const ops: RepoOpInfo[] = []
    let data = opts.fromStorage ? MST.load(this.storage, repo.commit.data) : repo.data
    for (const w of list) {
      if (w.action === 'create') {
        const path = `${w.collection}/${w.rkey ?? nextTid()}`
        const cid = await leaves.add(w.record)
        data = await data.add(path, cid)
        ops.push({ action: 'create', path, cid })
      } else {
        const prev = await data.get(w.path)
        if (!prev) throw new Error(`no record at ${w.path} in ${this.did}`)
        if (w.action === 'update') {
          const cid = await leaves.add(w.record)
          data = await data.update(w.path, cid)
          ops.push({ action: 'update', path: w.path, cid, prev })
        } else {
          data = await data.delete(w.path)
          ops.push({ action: 'delete', path: w.path, cid: null, prev })
        }
      }
    }
    const dataCid = await data.getPointer()
    const diff = await DataDiff.of(data, repo.data)
    const newBlocks = diff.newMstBlocks
    const relevantBlocks = new BlockMap()
    for (const op of ops) relevantBlocks.addMap(await data.getCoveringProof(op.path))
    const addedLeaves = leaves.getMany(diff.newLeafCids.toList())
    newBlocks.addMap(addedLeaves.blocks)
    relevantBlocks.addMap(addedLeaves.blocks)

    const rev = opts.rev ?? nextTid(repo.commit.rev)
    const commit = await signCommit({ did: this.did, version: 3, rev, prev: null, data: dataCid }, opts.signWith ?? this.signingKey)
    const commitCid = await newBlocks.add(commit)
    const commitBytes = newBlocks.get(commitCid)
    if (!commitBytes) throw new Error('commit block missing after add')
    relevantBlocks.set(commitCid, commitBytes)
    const removedCids = diff.removedCids
    removedCids.add(repo.cid)

    // What the PDS puts on the wire: new blocks plus the covering proofs.
    const toSend = new BlockMap()
    toSend.addMap(newBlocks)
    if (!opts.omitProofBlocks) toSend.addMap(relevantBlocks)

    const prevData = repo.commit.data
    const body: Record<string, unknown> = {
      rebase: false,
      tooBig: false,
      repo: opts.repoField ?? this.did,
      commit: link(commitCid),
      rev,
      since: repo.commit.rev,
      blocks: bytes(await blocksToCarFile(commitCid, toSend)),
      ops: ops.map(opToWire),
      blobs: [],
      time: new Date().toISOString(),
    }
    if (!opts.omitPrevData) body.prevData = link(prevData)

    if (opts.apply !== false) {
      const commitData: CommitData = { cid: commitCid, rev, since: repo.commit.rev, prev: repo.cid, newBlocks, relevantBlocks, removedCids }
      await this.storage.applyCommit(commitData)
      this.repoState = new Repo({ storage: this.storage, data, commit, cid: commitCid })
      for (const op of ops) this.trackPath(op)
    }
    return {
      t: '#commit',
      body,
      meta: { rev, since: repo.commit.rev, commit: commitCid, data: dataCid, prevData, ops },
    }
  }

  async createRecord(collection: string, record: Record<string, unknown>, rkey?: string): Promise<CommitEvent> {
    return this.commit(rkey === undefined ? { action: 'create', collection, record } : { action: 'create', collection, rkey, record })
  }
  async updateRecord(path: string, record: Record<string, unknown>): Promise<CommitEvent> {
    return this.commit({ action: 'update', path, record })
  }
  async deleteRecord(path: string): Promise<CommitEvent> {
    return this.commit({ action: 'delete', path })
  }

  /** `#sync` for the current head: a CAR holding only the signed commit block. */
  async syncEvent(time = new Date().toISOString()): Promise<PdsEvent> {
    const repo = this.repo
    const commitBytes = await this.storage.getBytes(repo.cid)
    if (!commitBytes) throw new Error('head commit block missing')
    const blocks = new BlockMap()
    blocks.set(repo.cid, commitBytes)
    return { t: '#sync', body: { did: this.did, rev: repo.commit.rev, blocks: bytes(await blocksToCarFile(repo.cid, blocks)), time } }
  }

  identityEvent(handle: string | undefined = this.handle, time = new Date().toISOString()): PdsEvent {
    const body: Record<string, unknown> = { did: this.did, time }
    if (handle !== undefined) body.handle = handle
    return { t: '#identity', body }
  }

  accountEvent(active: boolean, status?: AccountStatus, time = new Date().toISOString()): PdsEvent {
    const body: Record<string, unknown> = { did: this.did, active, time }
    if (status !== undefined) body.status = status
    return { t: '#account', body }
  }

  /** Reactivation as a PDS sequences it: `#account` active, `#identity`, `#sync`. */
  async activationEvents(): Promise<PdsEvent[]> {
    const time = new Date().toISOString()
    return [this.accountEvent(true, undefined, time), this.identityEvent(undefined, time), await this.syncEvent(time)]
  }

  /** Handle change: appends a signed PLC update op and returns the `#identity` event. */
  async changeHandle(handle: string): Promise<{ event: PdsEvent; plcOp: plc.Operation }> {
    const plcOp = await plc.updateHandleOp(this.lastPlcOp(), this.rotationKey, handle)
    this.plcOps.push(plcOp)
    this.handle = handle
    return { event: this.identityEvent(handle), plcOp }
  }

  /** Points the DID document at another PDS (a signed PLC op; no firehose event). */
  async movePds(pdsUrl: string): Promise<plc.Operation> {
    const plcOp = await plc.updatePdsOp(this.lastPlcOp(), this.rotationKey, pdsUrl)
    this.plcOps.push(plcOp)
    this.pdsUrl = pdsUrl
    return plcOp
  }

  /** Rotates the atproto signing key (PLC op); later commits are signed with the new key. */
  async rotateSigningKey(newKey?: Keypair): Promise<plc.Operation> {
    const key = newKey ?? generateKeypair(this.keyType)
    const plcOp = await plc.updateAtprotoKeyOp(this.lastPlcOp(), this.rotationKey, key.did())
    this.plcOps.push(plcOp)
    this.signingKey = key
    return plcOp
  }

  /** The whole current repo as a CAR (what `com.atproto.sync.getRepo` returns). */
  async repoCar(): Promise<Uint8Array> {
    return blocksToCarFile(this.repo.cid, this.storage.blocks)
  }

  private lastPlcOp(): plc.Operation {
    const last = this.plcOps[this.plcOps.length - 1]
    if (!last) throw new Error('no PLC ops')
    return last
  }

  private trackPath(op: RepoOpInfo): void {
    if (op.action === 'create') {
      this.pathIndex.set(op.path, this.paths.length)
      this.paths.push(op.path)
    } else if (op.action === 'delete') {
      const i = this.pathIndex.get(op.path)
      if (i === undefined) return
      const last = this.paths.pop() as string
      if (i < this.paths.length) {
        this.paths[i] = last
        this.pathIndex.set(last, i)
      }
      this.pathIndex.delete(op.path)
    }
  }
}

function opToWire(op: RepoOpInfo): Record<string, unknown> {
  const out: Record<string, unknown> = { action: op.action, path: op.path, cid: op.cid ? link(op.cid) : null }
  if (op.prev) out.prev = link(op.prev)
  return out
}
