/**
 * atproto signing keys (PROTOCOL.md §3.4): did:key / Multikey parsing and
 * ECDSA verification over sha256(message) for k256 and p256.
 *
 * Speed matters here (one verify per event), so keys are parsed once into
 * immutable objects that hold the ready-to-use form: the 65-byte uncompressed
 * point for the native libsecp256k1 binding (kept as a latin1 string), a KeyObject for P-256. Callers
 * cache PublicKey objects per DID.
 *
 * There is no verify-a-digest entry point: the signed bytes (the unsigned
 * commit) are hashed only for the signature, so nothing is hashed twice, and
 * node:crypto has no prehashed ECDSA verify for P-256.
 */
import { createPublicKey, verify as cryptoVerify, type KeyObject } from 'node:crypto'
import { createRequire } from 'node:module'
import { fromBase58Btc, toBase58Btc } from '@atcute/multibase'
import { sha256 } from './cid.js'

type Secp256k1 = typeof import('secp256k1')

const require = createRequire(import.meta.url)

// Load the native binding directly: the package's main entry silently falls
// back to a pure-JS implementation that is ~56x slower.
let secp256k1: Secp256k1
let nativeLoadError: Error | null = null
try {
  secp256k1 = require('secp256k1/bindings') as Secp256k1
} catch (err) {
  nativeLoadError = err as Error
  secp256k1 = require('secp256k1/elliptic') as Secp256k1
}

/** Throws unless the native libsecp256k1 binding is the one in use (call at start-up). */
export function assertNativeSecp256k1(): void {
  if (nativeLoadError !== null) {
    throw new Error(`native secp256k1 binding failed to load (pure-JS fallback is ~56x slower): ${nativeLoadError.message}`)
  }
}

export type Curve = 'k256' | 'p256'

export class KeyError extends Error {
  readonly reason = 'bad-key' as const
  constructor(message: string) {
    super(message)
    this.name = 'KeyError'
  }
}

export interface PublicKey {
  readonly curve: Curve
  /** `did:key:z…`, compressed multikey form. */
  readonly didKey: string
  /** sha256(message), then ECDSA. False (never throws) for bad signatures, including DER, length ≠ 64 and high-S. */
  verify(message: Uint8Array, sig: Uint8Array): boolean
}

const K256_PREFIX = [0xe7, 0x01] as const
const P256_PREFIX = [0x80, 0x24] as const

// SubjectPublicKeyInfo DER headers for a P-256 point (compressed 33 / uncompressed 65 bytes).
const P256_SPKI_COMPRESSED = Buffer.from('3039301306072a8648ce3d020106082a8648ce3d030107032200', 'hex')
const P256_SPKI_UNCOMPRESSED = Buffer.from('3059301306072a8648ce3d020106082a8648ce3d030107034200', 'hex')

// Half the P-256 group order: a signature with s above it is the malleable high-S form.
const P256_HALF_N = Buffer.from('7fffffff800000007fffffffffffffffde737d56d38bcf4279dce5617e3192a8', 'hex')

function didKeyFor(prefix: readonly [number, number], compressed: Uint8Array): string {
  const bytes = new Uint8Array(2 + compressed.length)
  bytes[0] = prefix[0]
  bytes[1] = prefix[1]
  bytes.set(compressed, 2)
  // toBase58Btc appends one character at a time, which leaves a rope of ~50 cons strings
  // (~1.1 KB of heap). Parsed keys live in the identity cache, one per DID: keep a flat copy (~80 B).
  return Buffer.from(`did:key:z${toBase58Btc(bytes)}`, 'latin1').toString('latin1')
}

class K256PublicKey implements PublicKey {
  readonly curve = 'k256' as const
  readonly didKey: string
  /**
   * The 65-byte uncompressed point, one char per byte. Parsed keys live in the identity cache (one
   * per DID); a Uint8Array there costs ~250 B of heap and malloc bookkeeping, this string ~85 B.
   * Turning it back into bytes per verify is ~0.1 µs next to a ~50 µs ECDSA verify.
   */
  private readonly uncompressed: string

  constructor(raw: Uint8Array) {
    let uncompressed: Uint8Array
    let compressed: Uint8Array
    try {
      uncompressed = secp256k1.publicKeyConvert(raw, false)
      compressed = secp256k1.publicKeyConvert(raw, true)
    } catch (err) {
      throw new KeyError(`invalid secp256k1 public key: ${(err as Error).message}`)
    }
    this.uncompressed = Buffer.from(uncompressed.buffer, uncompressed.byteOffset, uncompressed.byteLength).toString('latin1')
    this.didKey = didKeyFor(K256_PREFIX, compressed)
    Object.freeze(this)
  }

  verify(message: Uint8Array, sig: Uint8Array): boolean {
    if (sig.length !== 64) return false
    try {
      // libsecp256k1 accepts only low-S signatures.
      return secp256k1.ecdsaVerify(sig, sha256(message), Buffer.from(this.uncompressed, 'latin1'))
    } catch {
      return false // unparsable signature (r or s out of range)
    }
  }
}

class P256PublicKey implements PublicKey {
  readonly curve = 'p256' as const
  readonly didKey: string
  private readonly keyObject: KeyObject

  constructor(raw: Uint8Array) {
    const prefix = raw.length === 33 ? P256_SPKI_COMPRESSED : raw.length === 65 ? P256_SPKI_UNCOMPRESSED : null
    if (prefix === null) throw new KeyError(`P-256 public key must be 33 or 65 bytes, got ${raw.length}`)
    try {
      this.keyObject = createPublicKey({ key: Buffer.concat([prefix, raw]), format: 'der', type: 'spki' })
    } catch (err) {
      throw new KeyError(`invalid P-256 public key: ${(err as Error).message}`)
    }
    this.didKey = didKeyFor(P256_PREFIX, raw.length === 33 ? raw : compressP256(this.keyObject))
    Object.freeze(this)
  }

  verify(message: Uint8Array, sig: Uint8Array): boolean {
    if (sig.length !== 64 || !isLowS(sig)) return false
    try {
      return cryptoVerify('sha256', message, { key: this.keyObject, dsaEncoding: 'ieee-p1363' }, sig)
    } catch {
      return false // unparsable signature (r or s out of range)
    }
  }
}

function compressP256(key: KeyObject): Uint8Array {
  const jwk = key.export({ format: 'jwk' })
  const x = Buffer.from(jwk.x as string, 'base64url')
  const y = Buffer.from(jwk.y as string, 'base64url')
  const out = new Uint8Array(33)
  out[0] = ((y[31] as number) & 1) === 1 ? 0x03 : 0x02
  out.set(x, 33 - x.length)
  return out
}

/** s (the second half of r‖s) ≤ n/2, compared as 32-byte big-endian numbers. */
function isLowS(sig: Uint8Array): boolean {
  for (let i = 0; i < 32; i++) {
    const s = sig[32 + i] as number
    const h = P256_HALF_N[i] as number
    if (s !== h) return s < h
  }
  return true
}

function keyFor(curve: Curve, raw: Uint8Array): PublicKey {
  if (curve === 'k256') {
    if (raw.length !== 33 && raw.length !== 65) throw new KeyError(`secp256k1 public key must be 33 or 65 bytes, got ${raw.length}`)
    return new K256PublicKey(raw)
  }
  return new P256PublicKey(raw)
}

function decodeBase58(multibase: string): Uint8Array {
  if (!multibase.startsWith('z')) throw new KeyError('key is not base58btc multibase (z…)')
  try {
    return fromBase58Btc(multibase.slice(1))
  } catch (err) {
    throw new KeyError(`invalid base58btc key: ${(err as Error).message}`)
  }
}

/** A Multikey value: `z` + base58btc(multicodec prefix + compressed point). */
export function parseMultikey(multibase: string): PublicKey {
  const bytes = decodeBase58(multibase)
  const raw = bytes.subarray(2)
  if (bytes[0] === K256_PREFIX[0] && bytes[1] === K256_PREFIX[1]) {
    if (raw.length !== 33) throw new KeyError(`multikey secp256k1 key must be 33 bytes, got ${raw.length}`)
    return keyFor('k256', raw)
  }
  if (bytes[0] === P256_PREFIX[0] && bytes[1] === P256_PREFIX[1]) {
    if (raw.length !== 33) throw new KeyError(`multikey P-256 key must be 33 bytes, got ${raw.length}`)
    return keyFor('p256', raw)
  }
  throw new KeyError('unsupported multikey type (expected secp256k1 or P-256)')
}

export function parseDidKey(didKey: string): PublicKey {
  if (!didKey.startsWith('did:key:')) throw new KeyError('not a did:key')
  return parseMultikey(didKey.slice('did:key:'.length))
}

const LEGACY_TYPES: Record<string, Curve> = {
  EcdsaSecp256k1VerificationKey2019: 'k256',
  EcdsaSecp256r1VerificationKey2019: 'p256',
}

/**
 * A DID-document verification method: `Multikey`, or the legacy types whose
 * `publicKeyMultibase` is the raw 33- or 65-byte point without multicodec and
 * whose curve comes from the type.
 */
export function parseDidDocKey(type: string, publicKeyMultibase: string): PublicKey {
  if (type === 'Multikey') return parseMultikey(publicKeyMultibase)
  const curve = Object.hasOwn(LEGACY_TYPES, type) ? LEGACY_TYPES[type] : undefined
  if (curve === undefined) throw new KeyError(`unsupported verification method type ${type}`)
  return keyFor(curve, decodeBase58(publicKeyMultibase))
}
