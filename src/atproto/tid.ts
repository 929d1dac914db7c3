/**
 * TIDs (PROTOCOL.md §3.5): 13 base32-sortable characters encoding a 64-bit
 * value whose top 53 bits (after the sign bit) are microseconds since the
 * epoch and whose low 10 bits are a clock id. Used as record keys and `rev`.
 */
import { TidError } from './errors.js'
import { MAX_FUTURE_REV_MS } from './limits.js'
import { isValidTid } from './syntax.js'

const ALPHABET = '234567abcdefghijklmnopqrstuvwxyz'
const VALUE = new Int8Array(128).fill(-1)
for (let i = 0; i < ALPHABET.length; i++) VALUE[ALPHABET.charCodeAt(i)] = i

export interface ParsedTid {
  /** Microseconds since the UNIX epoch. */
  micros: number
  /** The 10-bit clock id. */
  clockId: number
}

export function parseTid(tid: string): ParsedTid {
  if (!isValidTid(tid)) throw new TidError(`invalid TID ${JSON.stringify(tid)}`)
  let micros = 0
  // The first 11 characters are bits 64..10: exactly the timestamp.
  for (let i = 0; i < 11; i++) micros = micros * 32 + (VALUE[tid.charCodeAt(i)] as number)
  const clockId = (VALUE[tid.charCodeAt(11)] as number) * 32 + (VALUE[tid.charCodeAt(12)] as number)
  return { micros, clockId }
}

export function tidToMicros(tid: string): number {
  return parseTid(tid).micros
}

/** A TID for the given time (microseconds) and clock id (0..1023). */
export function makeTid(micros: number, clockId = 0): string {
  if (!Number.isSafeInteger(micros) || micros < 0 || micros >= 2 ** 53) throw new TidError(`invalid TID timestamp ${micros}`)
  if (!Number.isInteger(clockId) || clockId < 0 || clockId > 1023) throw new TidError(`invalid TID clock id ${clockId}`)
  let out = ALPHABET[clockId & 31] as string
  out = (ALPHABET[clockId >> 5] as string) + out
  let rest = micros
  for (let i = 0; i < 11; i++) {
    out = (ALPHABET[rest % 32] as string) + out
    rest = Math.floor(rest / 32)
  }
  return out
}

/**
 * Orders two TIDs. Valid TIDs have a fixed length and an order-preserving
 * alphabet, so plain string comparison is numeric comparison.
 */
export function compareTids(a: string, b: string): -1 | 0 | 1 {
  return a < b ? -1 : a > b ? 1 : 0
}

/** Whether `rev`'s timestamp is more than `maxFutureMs` ahead of `nowMs`. Throws TidError for an invalid rev. */
export function isRevTooFarInFuture(rev: string, nowMs: number, maxFutureMs = MAX_FUTURE_REV_MS): boolean {
  return tidToMicros(rev) / 1000 > nowMs + maxFutureMs
}
