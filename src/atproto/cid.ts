/**
 * CIDs as plain bytes (36 bytes for the atproto-blessed CIDv1 + sha2-256 form).
 * Keeping them as bytes avoids object churn on the hot path; strings are made
 * only at the edges (JSON, logs).
 */
import { hash } from 'node:crypto'
import * as CID from '@atcute/cid'

export const CODEC_DAG_CBOR = 0x71
export const CODEC_RAW = 0x55

/** sha256 through node's one-shot API (Node >= 20.12). */
export function sha256(bytes: Uint8Array): Buffer {
  return hash('sha256', bytes, 'buffer')
}

/** Binary CIDv1 (dag-cbor, sha2-256) of a DAG-CBOR block. */
export function cidForCbor(block: Uint8Array): Uint8Array {
  const out = new Uint8Array(36)
  out[0] = 0x01
  out[1] = CODEC_DAG_CBOR
  out[2] = 0x12
  out[3] = 0x20
  out.set(sha256(block), 4)
  return out
}

/** Whether `cid` is the sha2-256 CID of `block` (codec dag-cbor or raw), compared in place. */
export function cidMatchesBlock(cid: Uint8Array, block: Uint8Array): boolean {
  if (cid.length !== 36 || cid[0] !== 0x01 || cid[2] !== 0x12 || cid[3] !== 0x20) return false
  if (cid[1] !== CODEC_DAG_CBOR && cid[1] !== CODEC_RAW) return false
  const digest = sha256(block)
  for (let i = 0; i < 32; i++) if (cid[4 + i] !== digest[i]) return false
  return true
}

export function cidEquals(a: Uint8Array | null | undefined, b: Uint8Array | null | undefined): boolean {
  if (!a || !b) return a === b
  return bytesEqual(a, b)
}

/** Same length and bytes (CIDs, MST keys). */
export function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false
  return true
}

/** `bafy…` string form of binary CID bytes. */
export function cidToString(cid: Uint8Array): string {
  return CID.toString(CID.decode(cid))
}

/** Binary CID bytes from a `bafy…` string; throws on invalid input. (`toBinary` would add the 0x00 multibase prefix.) */
export function cidFromString(text: string): Uint8Array {
  return copyBytes(CID.fromString(text).bytes)
}

/** A copy that does not pin the buffer it was sliced from (decoded CIDs are views into frames). */
export function copyBytes(view: Uint8Array): Uint8Array {
  return new Uint8Array(view)
}
