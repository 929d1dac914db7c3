import { sha256 } from '../cid.js'
import { SMALL_SHA256_MAX, sha256SmallWords } from './sha256-small.js'

const utf8 = new TextEncoder()

/** MST keys are the UTF-8 bytes of the repo path. */
export function keyBytes(key: Uint8Array | string): Uint8Array {
  return typeof key === 'string' ? utf8.encode(key) : key
}

/** Layer of a key: leading zero bits of sha256(key), counted in 2-bit chunks (fanout 4). */
export function keyHeight(key: Uint8Array | string): number {
  const bytes = keyBytes(key)
  return keyHeightAt(bytes, 0, bytes.length)
}

/** keyHeight of the key stored at `bytes[start .. start + length]`. */
export function keyHeightAt(bytes: Uint8Array, start: number, length: number): number {
  let zeros = 0
  if (length <= SMALL_SHA256_MAX) {
    const words = sha256SmallWords(bytes, start, length)
    for (let i = 0; i < 8; i++) {
      const z = Math.clz32(words[i]!)
      zeros += z
      if (z < 32) break
    }
  } else {
    const digest = sha256(bytes.subarray(start, start + length))
    for (let i = 0; i < 32; i++) {
      const byte = digest[i]!
      if (byte === 0) {
        zeros += 8
        continue
      }
      zeros += Math.clz32(byte) - 24
      break
    }
  }
  return zeros >> 1
}

/** Number of leading bytes `a` and `b` share. */
export function commonPrefixLength(a: Uint8Array, b: Uint8Array): number {
  const n = a.length < b.length ? a.length : b.length
  let i = 0
  while (i < n && a[i] === b[i]) i++
  return i
}

/** Bytewise order of two keys: negative, zero or positive. */
export function compareKeys(a: Uint8Array, b: Uint8Array): number {
  const n = a.length < b.length ? a.length : b.length
  for (let i = 0; i < n; i++) {
    const d = a[i]! - b[i]!
    if (d !== 0) return d
  }
  return a.length - b.length
}

/** First index whose key is >= `key` (keys sorted ascending). */
export function lowerBound(keys: readonly Uint8Array[], key: Uint8Array): number {
  let lo = 0
  let hi = keys.length
  while (lo < hi) {
    const mid = (lo + hi) >> 1
    if (compareKeys(keys[mid]!, key) < 0) lo = mid + 1
    else hi = mid
  }
  return lo
}
