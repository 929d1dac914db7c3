/**
 * Repo commit objects, version 3 (PROTOCOL.md §3.3).
 *
 * The block is decoded with the strict DRISL decoder, so it is canonical; the
 * unsigned form is the same map without `sig`, re-encoded canonically with
 * every other field kept (unknown fields and `prev: null` included), which is
 * exactly what the signer hashed.
 */
import { BytesWrapper, CidLinkWrapper, encode } from '@atcute/cbor'
import { CborLimitError, decodeBounded } from './cbor-scan.js'
import { CODEC_DAG_CBOR } from './cid.js'
import { CommitError } from './errors.js'
import { isPlainMap } from './frame.js'
import { BLOCK_LIMITS } from './limits.js'
import type { PublicKey } from './keys.js'
import { isValidDid, isValidTid } from './syntax.js'

export interface Commit {
  did: string
  version: 3
  /** MST root CID (view into the block). */
  data: Uint8Array
  rev: string
  prev: Uint8Array | null
  /** 64-byte r‖s signature (view into the block). */
  sig: Uint8Array
  /** The decoded map without `sig`, for re-encoding the signed bytes. */
  unsigned: Record<string, unknown>
}

/** A dag-cbor sha2-256 CIDv1 link, as commit `data`/`prev` must be. */
export function isDagCborLink(value: unknown): value is CidLinkWrapper {
  return value instanceof CidLinkWrapper && value.bytes.length === 36 && value.bytes[1] === CODEC_DAG_CBOR
}

/** Decode a commit block and check its structure. Throws CommitError, or CborLimitError for a block over BLOCK_LIMITS. */
export function decodeCommit(block: Uint8Array): Commit {
  let value: unknown
  try {
    value = decodeBounded(block, BLOCK_LIMITS, 'commit block')
  } catch (err) {
    if (err instanceof CborLimitError) throw err
    throw new CommitError(`commit block is not valid DRISL-CBOR: ${(err as Error).message}`)
  }
  if (!isPlainMap(value)) throw new CommitError('commit block is not a map')
  const { did, version, data, rev, prev, sig } = value
  if (version !== 3) throw new CommitError(`unsupported commit version ${String(version)}`)
  if (typeof did !== 'string' || !isValidDid(did)) throw new CommitError('commit did is missing or invalid')
  if (typeof rev !== 'string' || !isValidTid(rev)) throw new CommitError('commit rev is missing or not a TID')
  if (!isDagCborLink(data)) throw new CommitError('commit data is not a dag-cbor CID link')
  // `prev` must be present (normally null): omitting it changes the signed bytes.
  if (!Object.hasOwn(value, 'prev')) throw new CommitError('commit has no prev field')
  if (prev !== null && !isDagCborLink(prev)) throw new CommitError('commit prev is neither null nor a CID link')
  if (!(sig instanceof BytesWrapper)) throw new CommitError('commit sig is missing or not bytes')
  if (sig.buf.length !== 64) throw new CommitError(`commit sig is ${sig.buf.length} bytes, expected 64`)
  const unsigned: Record<string, unknown> = { ...value }
  delete unsigned.sig
  return { did, version: 3, data: data.bytes, rev, prev: prev === null ? null : prev.bytes, sig: sig.buf, unsigned }
}

/** The canonical bytes the commit signature covers. */
export function unsignedCommitBytes(commit: Commit): Uint8Array {
  return encode(commit.unsigned)
}

/** Whether `commit.sig` is a valid signature by `key` (never throws). */
export function verifyCommitSignature(commit: Commit, key: PublicKey): boolean {
  return key.verify(unsignedCommitBytes(commit), commit.sig)
}
