/**
 * Frames a relay must refuse. Each is built from a real account so that only
 * the one property under test is wrong; none advances the account's state.
 */
import { createHash, randomBytes } from 'node:crypto'
import { encode } from '@atcute/cbor'
import { bytes, encodeEventFrame, link, type PdsEvent } from './frames.js'
import { generateKeypair, type CommitEvent, type TestAccount, type WriteSpec } from './repo-builder.js'
import { tidAtOffset } from './tid.js'

function defaultWrite(): WriteSpec {
  return { action: 'create', collection: 'app.bsky.feed.like', record: { $type: 'app.bsky.feed.like', subject: { uri: 'at://did:plc:aaaaaaaaaaaaaaaaaaaaaaaa/app.bsky.feed.post/3jzfcijpj2z2a', cid: 'bafyreihvrjfjsrl5ikl2csp2u5i2uyhzxhb3e4qpiqx4f3rzbalbofiz3e' }, createdAt: new Date().toISOString() } }
}

/** A well-formed commit signed with a key that is not the account's. */
export async function forgedSignatureCommit(account: TestAccount, writes: WriteSpec | WriteSpec[] = defaultWrite()): Promise<CommitEvent> {
  return account.commit(writes, { signWith: generateKeypair(account.keyType), apply: false })
}

/** A validly signed commit whose `body.repo` names another DID. */
export async function wrongRepoCommit(account: TestAccount, otherDid: string, writes: WriteSpec | WriteSpec[] = defaultWrite()): Promise<CommitEvent> {
  return account.commit(writes, { repoField: otherDid, apply: false })
}

/** A validly signed commit reusing the current rev (or `rev` if given): a replay by rev. */
export async function replayedRevCommit(account: TestAccount, writes: WriteSpec | WriteSpec[] = defaultWrite(), rev = account.rev): Promise<CommitEvent> {
  return account.commit(writes, { rev, apply: false })
}

/** A validly signed commit whose rev is `aheadMs` in the future (default 1 hour). */
export async function futureRevCommit(account: TestAccount, writes: WriteSpec | WriteSpec[] = defaultWrite(), aheadMs = 3_600_000): Promise<CommitEvent> {
  return account.commit(writes, { rev: tidAtOffset(aheadMs), apply: false })
}

/** A validly signed commit whose `prevData` does not match the previous data root (a discontinuity). */
export async function wrongPrevDataCommit(account: TestAccount, writes: WriteSpec | WriteSpec[] = defaultWrite()): Promise<CommitEvent> {
  const event = await account.commit(writes, { apply: false })
  event.body.prevData = event.body.commit
  return event
}

/** Random bytes: not CBOR at all (deterministic length, random content). */
export function garbageFrame(size = 256): Uint8Array {
  // Deterministic, so the drop reason is too: random bytes sometimes declare a huge array (too-many-items).
  // 0xff (a break code outside any indefinite item) makes the first head malformed: always bad-frame.
  const out = new Uint8Array(size)
  let x = 0x9e3779b9
  for (let i = 0; i < size; i++) {
    x ^= x << 13
    x ^= x >>> 17
    x ^= x << 5
    out[i] = x & 0xff
  }
  out[0] = 0xff
  return out
}

/** A valid frame cut short, so the body's CBOR ends early. */
export function truncatedFrame(frame: Uint8Array, keep = Math.floor(frame.length / 2)): Uint8Array {
  return frame.slice(0, keep)
}

/**
 * An otherwise valid `#commit` frame padded past the 5 MB frame limit with an
 * unknown body field (unknown fields are legal, so only the size is wrong).
 */
export async function oversizeFrame(account: TestAccount, seq: number, totalBytes = 5_100_000): Promise<Uint8Array> {
  const event = await account.commit(defaultWrite(), { apply: false })
  const padded: PdsEvent = { t: event.t, body: { ...event.body, zpad: bytes(new Uint8Array(totalBytes)) } }
  return encodeEventFrame(padded, seq)
}

/** A validly signed commit whose `blocks` CAR exceeds `minBlocksBytes` (default just over the 2 MB limit). */
export async function oversizeBlocksCommit(account: TestAccount, minBlocksBytes = 2_050_000): Promise<CommitEvent> {
  const chunk = 100_000
  const count = Math.ceil(minBlocksBytes / chunk) + 1
  const writes: WriteSpec[] = []
  for (let i = 0; i < count; i++) {
    writes.push({ action: 'create', collection: 'com.example.blob', record: { $type: 'com.example.blob', data: new Uint8Array(randomBytes(chunk)) } })
  }
  return account.commit(writes, { apply: false })
}

/** A CBOR nesting bomb: `depth` one-element arrays around a 0 (`depth + 1` bytes, valid canonical DAG-CBOR). */
export function nestedArrayBomb(depth: number): Uint8Array {
  const out = new Uint8Array(depth + 1).fill(0x81)
  out[depth] = 0x00
  return out
}

/** An `#info` frame whose whole body is a `depth`-deep nested array (4.9 M deep fills most of a 5 MB frame). */
export function infoBombFrame(depth = 4_900_000): Uint8Array {
  return concatBytes(encode({ t: '#info', op: 1 }), nestedArrayBomb(depth))
}

/** A `#commit` frame `{ops: <bomb>, seq}`: well-formed framing, an `ops` nested `depth` deep. */
export function commitBombFrame(seq: number, depth = 4_900_000): Uint8Array {
  const key = (name: string): Uint8Array => encode(name)
  return concatBytes(encode({ t: '#commit', op: 1 }), new Uint8Array([0xa2]), key('ops'), nestedArrayBomb(depth), key('seq'), encode(seq))
}

/**
 * A `#commit` from `account` whose CAR holds one block, a `depth`-deep nesting
 * bomb, named (by its real hash) as the commit block. Just under the 1 MB
 * block limit by default; the frame itself is well within every limit.
 */
export async function carBombCommit(account: TestAccount, depth = 999_000): Promise<CommitEvent> {
  const event = await account.commit(defaultWrite(), { apply: false })
  const block = nestedArrayBomb(depth)
  const cid = concatBytes(new Uint8Array([0x01, 0x71, 0x12, 0x20]), new Uint8Array(createHash('sha256').update(block).digest()))
  const header = encode({ roots: [link(cid)], version: 1 })
  const car = concatBytes(varint(header.length), header, varint(cid.length + block.length), cid, block)
  event.body.blocks = bytes(car)
  event.body.commit = link(cid)
  return event
}

function varint(n: number): Uint8Array {
  const out: number[] = []
  while (n >= 0x80) {
    out.push((n & 0x7f) | 0x80)
    n = Math.floor(n / 128)
  }
  out.push(n)
  return new Uint8Array(out)
}

function concatBytes(...parts: Uint8Array[]): Uint8Array {
  return new Uint8Array(Buffer.concat(parts))
}

/** An `#info` frame whose body is a flat array of `items` zeros: shallow, but far too many items. */
export function infoFlatFrame(items = 4_900_000): Uint8Array {
  const head = new Uint8Array([0x9a, (items >>> 24) & 0xff, (items >>> 16) & 0xff, (items >>> 8) & 0xff, items & 0xff])
  return concatBytes(encode({ t: '#info', op: 1 }), head, new Uint8Array(items))
}
