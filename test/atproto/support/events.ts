/**
 * Test support: real repos built with @atproto/repo (an independent
 * implementation), turned into #commit / #sync bodies with our own CBOR/CAR
 * writer so tests can also forge and re-sign tampered variants.
 */
import { createPrivateKey, sign as cryptoSign } from 'node:crypto'
import { CidLinkWrapper, encode, toBytes } from '@atcute/cbor'
import { P256Keypair, Secp256k1Keypair, type Keypair } from '@atproto/crypto'
import { MemoryBlockstore, Repo, WriteOpAction, type RecordCreateOp, type RecordWriteOp } from '@atproto/repo'
import secp256k1 from 'secp256k1'
import { cidForCbor, sha256 } from '../../../src/atproto/cid.js'
import { decodeFrame, encodeMessageFrame, type MessageFrame } from '../../../src/atproto/frame.js'
import { parseDidKey, type Curve, type PublicKey } from '../../../src/atproto/keys.js'

type Cid = Parameters<MemoryBlockstore['getBytes']>[0]

export interface CommitParts {
  did: string
  rev: string
  since: string | null
  commitCid: Uint8Array
  commitBlock: Uint8Array
  dataCid: Uint8Array
  prevData: Uint8Array | null
  /** Every block of the slice, commit included, as [cid, bytes]. */
  blocks: [Uint8Array, Uint8Array][]
  ops: { action: 'create' | 'update' | 'delete'; path: string; cid: Uint8Array | null; prev?: Uint8Array }[]
}

const P256_N = BigInt('0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551')

/** Low-S r‖s signature over sha256(message). */
export function signBytes(curve: Curve, privateKey: Uint8Array, message: Uint8Array): Uint8Array {
  if (curve === 'k256') return secp256k1.ecdsaSign(sha256(message), privateKey).signature
  const key = createPrivateKey({
    key: Buffer.concat([Buffer.from('3041020100301306072a8648ce3d020106082a8648ce3d030107042730250201010420', 'hex'), privateKey]),
    format: 'der',
    type: 'pkcs8',
  })
  const sig = new Uint8Array(cryptoSign('sha256', message, { key, dsaEncoding: 'ieee-p1363' }))
  const s = BigInt(`0x${Buffer.from(sig.subarray(32)).toString('hex')}`)
  if (s > P256_N / 2n) sig.set(Buffer.from((P256_N - s).toString(16).padStart(64, '0'), 'hex'), 32)
  return sig
}

/** A signed commit block. `extra` fields are included in the signed map. */
export function signCommit(
  curve: Curve,
  privateKey: Uint8Array,
  fields: { did: string; rev: string; data: Uint8Array; prev?: Uint8Array | null; extra?: Record<string, unknown> },
): { cid: Uint8Array; block: Uint8Array; sig: Uint8Array } {
  const unsigned: Record<string, unknown> = {
    ...fields.extra,
    did: fields.did,
    version: 3,
    data: new CidLinkWrapper(fields.data),
    rev: fields.rev,
    prev: fields.prev ? new CidLinkWrapper(fields.prev) : null,
  }
  const sig = signBytes(curve, privateKey, encode(unsigned))
  const block = encode({ ...unsigned, sig: toBytes(sig) })
  return { cid: cidForCbor(block), block, sig }
}

function varint(n: number): number[] {
  const out: number[] = []
  while (n >= 0x80) {
    out.push((n & 0x7f) | 0x80)
    n = Math.floor(n / 128)
  }
  out.push(n)
  return out
}

/** A CAR v1 file with the given roots and blocks, in order. */
export function writeCar(roots: Uint8Array[], blocks: [Uint8Array, Uint8Array][]): Uint8Array {
  const header = encode({ version: 1, roots: roots.map((r) => new CidLinkWrapper(r)) })
  const parts: Uint8Array[] = [Uint8Array.from(varint(header.length)), header]
  for (const [cid, bytes] of blocks) {
    parts.push(Uint8Array.from(varint(cid.length + bytes.length)), cid, bytes)
  }
  return new Uint8Array(Buffer.concat(parts))
}

export interface BodyOverrides {
  [field: string]: unknown
}

/** The #commit body as a PDS writes it, optionally with fields replaced (undefined removes a field). */
export function commitBody(parts: CommitParts, overrides: BodyOverrides = {}, seq = 1): Record<string, unknown> {
  const body: Record<string, unknown> = {
    seq,
    rebase: false,
    tooBig: false,
    repo: parts.did,
    commit: new CidLinkWrapper(parts.commitCid),
    rev: parts.rev,
    since: parts.since,
    blocks: toBytes(writeCar([parts.commitCid], parts.blocks)),
    ops: parts.ops.map((op) => {
      const out: Record<string, unknown> = { action: op.action, path: op.path, cid: op.cid ? new CidLinkWrapper(op.cid) : null }
      if (op.prev) out.prev = new CidLinkWrapper(op.prev)
      return out
    }),
    blobs: [],
    time: new Date().toISOString(),
  }
  if (parts.prevData) body.prevData = new CidLinkWrapper(parts.prevData)
  for (const [k, v] of Object.entries(overrides)) {
    if (v === undefined) delete body[k]
    else body[k] = v
  }
  return body
}

export function syncBody(parts: CommitParts, overrides: BodyOverrides = {}, seq = 1): Record<string, unknown> {
  const body: Record<string, unknown> = {
    seq,
    did: parts.did,
    rev: parts.rev,
    blocks: toBytes(writeCar([parts.commitCid], [[parts.commitCid, parts.commitBlock]])),
    time: new Date().toISOString(),
  }
  for (const [k, v] of Object.entries(overrides)) {
    if (v === undefined) delete body[k]
    else body[k] = v
  }
  return body
}

/** Encode as a frame and decode again, so the body holds views into frame bytes as on the wire. */
export function throughWire(t: string, body: Record<string, unknown>): MessageFrame {
  return decodeFrame(encodeMessageFrame(t, body)) as MessageFrame
}

function cidBytes(cid: Cid): Uint8Array {
  return new Uint8Array(cid.bytes)
}

let didCounter = 0

export class TestRepo {
  private constructor(
    readonly did: string,
    readonly curve: Curve,
    readonly privateKey: Uint8Array,
    readonly keypair: Keypair,
    readonly publicKey: PublicKey,
    private readonly storage: MemoryBlockstore,
    private repo: Repo,
  ) {}

  static async create(opts: { curve?: Curve; records?: number; collection?: string } = {}): Promise<TestRepo> {
    const curve = opts.curve ?? 'k256'
    const keypair = curve === 'k256' ? await Secp256k1Keypair.create({ exportable: true }) : await P256Keypair.create({ exportable: true })
    const privateKey = await keypair.export()
    const did = `did:plc:testrepo${(didCounter++).toString().padStart(16, '0')}`
    const storage = new MemoryBlockstore()
    const collection = opts.collection ?? 'app.bsky.feed.post'
    const writes: RecordCreateOp[] = []
    for (let i = 0; i < (opts.records ?? 0); i++) writes.push(createWrite(collection, i))
    const repo = await Repo.create(storage, did, keypair, writes)
    return new TestRepo(did, curve, privateKey, keypair, parseDidKey(keypair.did()), storage, repo)
  }

  get head(): { rev: string; data: Uint8Array; cid: Uint8Array } {
    return { rev: this.repo.commit.rev, data: cidBytes(this.repo.commit.data), cid: cidBytes(this.repo.cid) }
  }

  /** Apply writes, returning the parts of the #commit a PDS would emit (prevData set). */
  async commit(writes: RecordWriteOp[]): Promise<CommitParts> {
    const prevData = cidBytes(this.repo.commit.data)
    const ops: CommitParts['ops'] = []
    for (const w of writes) {
      const path = `${w.collection}/${w.rkey}`
      const old = await this.repo.data.get(path)
      ops.push({ action: w.action, path, cid: null, ...(old ? { prev: cidBytes(old) } : {}) })
    }
    const data = await this.repo.formatCommit(writes, this.keypair)
    this.repo = await this.repo.applyCommit(data)
    for (const op of ops) {
      if (op.action === 'delete') continue
      const now = await this.repo.data.get(op.path)
      op.cid = now ? cidBytes(now) : null
    }
    const blocks = new Map<string, [Uint8Array, Uint8Array]>()
    for (const map of [data.newBlocks, data.relevantBlocks]) {
      map.forEach((bytes, cid) => blocks.set(cid.toString(), [cidBytes(cid), new Uint8Array(bytes)]))
    }
    const commitCid = cidBytes(data.cid)
    const commitBlock = blocks.get(data.cid.toString())![1]
    return {
      did: this.did,
      rev: data.rev,
      since: data.since,
      commitCid,
      commitBlock,
      dataCid: cidBytes(this.repo.commit.data),
      prevData,
      blocks: [...blocks.values()],
      ops,
    }
  }
}

let rkeyCounter = 0

export function createWrite(collection: string, i: number, text = `post number ${i}`): RecordCreateOp {
  return {
    action: WriteOpAction.Create,
    collection,
    rkey: nextRkey(),
    record: { $type: collection, text, createdAt: new Date(Date.UTC(2025, 0, 1, 0, 0, i)).toISOString() },
  }
}

/** Unique, valid, increasing TID-like record keys. */
export function nextRkey(): string {
  const alphabet = '234567abcdefghijklmnopqrstuvwxyz'
  let n = 1_700_000_000_000_000 + rkeyCounter++ * 1024
  let out = ''
  for (let i = 0; i < 13; i++) {
    out = alphabet[n % 32] + out
    n = Math.floor(n / 32)
  }
  return out
}
