/**
 * One fake account's repo, kept small so a host process can hold 100k of them
 * and sign thousands of commits a second: real MST (src/atproto/mst), real
 * secp256k1 signatures, Sync 1.1 `#commit`s with `prevData`, op `prev` and
 * covering-proof blocks. The repo keeps at most MAX_RECORDS records (older
 * ones are deleted by later commits), so it stays a node or two.
 *
 * Each rev is a TID of the wall clock (µs) when the commit is built, so a
 * consumer can compute host → consumer latency from the rev alone.
 */
import { CidLinkWrapper, encode, toBytes } from '@atcute/cbor'
import { BlockMap } from '../../src/atproto/blocks.js'
import { cidForCbor, cidToString } from '../../src/atproto/cid.js'
import { applyOps, coveringProof, EMPTY_NODE_BYTES, emptyRootCid, layeredBlocks, type MstOp } from '../../src/atproto/mst/index.js'
import { makeTid, tidToMicros } from '../../src/atproto/tid.js'
import type { PdsEvent } from '../../test/helpers/frames.js'
import { NativeSecp256k1Keypair } from '../../test/helpers/fast-keys.js'
import { followRecord, likeRecord, postRecord, repostRecord, type Rng, type StrongRef } from '../../test/helpers/records.js'

const MAX_RECORDS = 6
const COLLECTIONS = ['app.bsky.feed.post', 'app.bsky.feed.like', 'app.bsky.graph.follow', 'app.bsky.feed.repost']

/** Wall-clock microseconds, sub-millisecond, comparable across processes on this machine. */
export function wallMicros(): number {
  return Math.floor((performance.timeOrigin + performance.now()) * 1000)
}

function carFile(root: Uint8Array, blocks: Iterable<[Uint8Array, Uint8Array]>): Uint8Array {
  const parts: Uint8Array[] = []
  const push = (b: Uint8Array) => {
    parts.push(varint(b.length))
    parts.push(b)
  }
  push(encode({ version: 1, roots: [new CidLinkWrapper(root)] }))
  for (const [cid, bytes] of blocks) {
    parts.push(varint(cid.length + bytes.length))
    parts.push(cid)
    parts.push(bytes)
  }
  return Buffer.concat(parts)
}

function varint(n: number): Uint8Array {
  const out: number[] = []
  while (n >= 0x80) {
    out.push((n & 0x7f) | 0x80)
    n >>>= 7
  }
  out.push(n)
  return Uint8Array.from(out)
}

const link = (cid: Uint8Array) => new CidLinkWrapper(cid)

export class FastAccount {
  private root = emptyRootCid()
  private blocks = new BlockMap()
  private head: Uint8Array | null = null
  private headBytes: Uint8Array | null = null
  rev: string | null = null
  /** path → record CID, oldest first. */
  private readonly records = new Map<string, Uint8Array>()
  active = true

  constructor(
    readonly did: string,
    public handle: string,
    readonly key: NativeSecp256k1Keypair,
  ) {
    this.blocks.set(this.root, EMPTY_NODE_BYTES)
  }

  get created(): boolean {
    return this.head !== null
  }
  get headCid(): Uint8Array | null {
    return this.head
  }
  get collections(): string[] {
    return [...new Set([...this.records.keys()].map((p) => p.slice(0, p.indexOf('/'))))]
  }

  private nextRev(): string {
    let micros = wallMicros()
    if (this.rev !== null) micros = Math.max(micros, tidToMicros(this.rev) + 1)
    return makeTid(micros)
  }

  private async signCommit(data: Uint8Array, rev: string): Promise<{ cid: Uint8Array; bytes: Uint8Array }> {
    const unsigned = { did: this.did, version: 3, data: link(data), rev, prev: null }
    const sig = await this.key.sign(encode(unsigned))
    const bytes = encode({ ...unsigned, sig: toBytes(sig) })
    return { cid: cidForCbor(bytes), bytes }
  }

  /** Account creation as a PDS sequences it: #identity, #account, genesis #commit, #sync. */
  async genesis(time = new Date().toISOString()): Promise<PdsEvent[]> {
    const rev = this.nextRev()
    const commit = await this.signCommit(this.root, rev)
    this.head = commit.cid
    this.headBytes = commit.bytes
    this.rev = rev
    const blocks = carFile(commit.cid, [[commit.cid, commit.bytes], [this.root, EMPTY_NODE_BYTES]])
    return [
      { t: '#identity', body: { did: this.did, handle: this.handle, time } },
      { t: '#account', body: { did: this.did, active: true, time } },
      { t: '#commit', body: { rebase: false, tooBig: false, repo: this.did, commit: link(commit.cid), rev, since: null, blocks: toBytes(blocks), ops: [], blobs: [], time } },
      this.syncEvent(time),
    ]
  }

  /** `#sync` for the current head (a CAR with only the signed commit). */
  syncEvent(time = new Date().toISOString()): PdsEvent {
    if (!this.head || !this.headBytes || !this.rev) throw new Error(`${this.did}: no repo yet`)
    return { t: '#sync', body: { did: this.did, rev: this.rev, blocks: toBytes(carFile(this.head, [[this.head, this.headBytes]])), time } }
  }

  accountEvent(active: boolean, status?: string): PdsEvent {
    this.active = active
    const body: Record<string, unknown> = { did: this.did, active, time: new Date().toISOString() }
    if (status) body.status = status
    return { t: '#account', body }
  }

  identityEvent(): PdsEvent {
    return { t: '#identity', body: { did: this.did, handle: this.handle, time: new Date().toISOString() } }
  }

  /** One #commit: a create of the realistic mix, plus a delete of the oldest record once the repo is full. */
  async commit(rng: Rng, others: readonly string[], recent: StrongRef[]): Promise<PdsEvent> {
    if (!this.head || !this.rev) throw new Error(`${this.did}: no repo yet`)
    const now = new Date().toISOString()
    const ops: MstOp[] = []
    const leaves = new BlockMap()
    const wire: Record<string, unknown>[] = []
    const subject = recent.length > 0 ? recent[Math.floor(rng.next() * recent.length)]! : undefined
    const other = others[Math.floor(rng.next() * others.length)] ?? this.did
    // The corpus mix (bench/corpus): posts (with mentions), likes, follows, reposts.
    const r = rng.next()
    const collection = r < 0.35 || !subject ? COLLECTIONS[0]! : r < 0.7 ? COLLECTIONS[1]! : r < 0.85 ? COLLECTIONS[2]! : COLLECTIONS[3]!
    const record =
      collection === COLLECTIONS[0] ? postRecord(rng, now, { mentionDid: other }) : collection === COLLECTIONS[1] ? likeRecord(subject!, now) : collection === COLLECTIONS[2] ? followRecord(other, now) : repostRecord(subject!, now)
    const recordBytes = encode(record)
    const recordCid = cidForCbor(recordBytes)
    leaves.set(recordCid, recordBytes)
    const rev = this.nextRev()
    const path = `${collection}/${rev}`
    ops.push({ action: 'create', path, cid: recordCid, prev: null })
    wire.push({ action: 'create', path, cid: link(recordCid) })
    if (this.records.size >= MAX_RECORDS) {
      const [oldPath, oldCid] = this.records.entries().next().value as [string, Uint8Array]
      ops.push({ action: 'delete', path: oldPath, cid: null, prev: oldCid })
      wire.push({ action: 'delete', path: oldPath, cid: null, prev: link(oldCid) })
    }
    const prevData = this.root
    const applied = applyOps(this.root, this.blocks, ops)
    const commit = await this.signCommit(applied.root, rev)
    const send = new BlockMap()
    send.set(commit.cid, commit.bytes)
    for (const [c, b] of applied.proofBlocks.entries()) send.set(c, b)
    send.set(recordCid, recordBytes)
    const body = {
      rebase: false,
      tooBig: false,
      repo: this.did,
      commit: link(commit.cid),
      rev,
      since: this.rev,
      blocks: toBytes(carFile(commit.cid, send.entries())),
      ops: wire,
      blobs: [],
      prevData: link(prevData),
      time: now,
    }
    for (const op of ops) {
      if (op.action === 'create') this.records.set(op.path, recordCid)
      else this.records.delete(op.path)
    }
    // Keep only the new tree's nodes: every node of a non-empty tree is on the path to one of its keys.
    this.blocks = coveringProof(applied.root, layeredBlocks(applied.blocks, this.blocks), this.records.keys())
    this.root = applied.root
    this.head = commit.cid
    this.headBytes = commit.bytes
    this.rev = rev
    if (collection === 'app.bsky.feed.post') {
      const ref = { uri: `at://${this.did}/${path}`, cid: cidToString(recordCid) }
      if (recent.length >= 200) recent[Math.floor(rng.next() * 200)] = ref
      else recent.push(ref)
    }
    return { t: '#commit', body }
  }
}

