import { createECDH, createPrivateKey, sign as cryptoSign } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { fromBase58Btc, toBase58Btc } from '@atcute/multibase'
import secp256k1 from 'secp256k1'
import { describe, expect, it } from 'vitest'
import { sha256 } from '../../src/atproto/cid.js'
import { KeyError, assertNativeSecp256k1, parseDidDocKey, parseDidKey, parseMultikey } from '../../src/atproto/keys.js'

function fixture<T>(path: string): T {
  return JSON.parse(readFileSync(new URL(`../fixtures/${path}`, import.meta.url), 'utf8')) as T
}

interface SignatureFixture {
  comment: string
  messageBase64: string
  algorithm: 'ES256' | 'ES256K'
  didDocSuite: string
  publicKeyDid: string
  publicKeyMultibase: string
  signatureBase64: string
  validSignature: boolean
  tags: string[]
}

const signatures = fixture<SignatureFixture[]>('interop/crypto/signature-fixtures.json')
const k256DidKeys = fixture<{ privateKeyBytesHex: string; publicDidKey: string }[]>('interop/crypto/w3c_didkey_K256.json')
const p256DidKeys = fixture<{ privateKeyBytesBase58: string; publicDidKey: string }[]>('interop/crypto/w3c_didkey_P256.json')

const K256_N = BigInt('0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141')
const P256_N = BigInt('0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551')

function withS(sig: Uint8Array, s: bigint): Uint8Array {
  const out = new Uint8Array(sig)
  out.set(Buffer.from(s.toString(16).padStart(64, '0'), 'hex'), 32)
  return out
}

function sOf(sig: Uint8Array): bigint {
  return BigInt(`0x${Buffer.from(sig.subarray(32)).toString('hex')}`)
}

function b64(text: string): Uint8Array {
  return new Uint8Array(Buffer.from(text, 'base64'))
}

function keyError(fn: () => unknown): KeyError {
  try {
    fn()
  } catch (err) {
    if (err instanceof KeyError) return err
    throw err
  }
  throw new Error('expected a KeyError')
}

describe('signature fixtures', () => {
  it('has the six interop cases', () => {
    expect(signatures.length).toBe(6)
    expect(signatures.filter((f) => f.validSignature).length).toBe(2)
  })

  for (const f of signatures) {
    it(`${f.comment}`, () => {
      const message = b64(f.messageBase64)
      const sig = b64(f.signatureBase64)
      const fromDid = parseDidKey(f.publicKeyDid)
      const fromDoc = parseDidDocKey(f.didDocSuite, f.publicKeyMultibase)
      expect(fromDid.curve).toBe(f.algorithm === 'ES256' ? 'p256' : 'k256')
      expect(fromDoc.curve).toBe(fromDid.curve)
      expect(fromDoc.didKey).toBe(f.publicKeyDid)
      expect(fromDid.didKey).toBe(f.publicKeyDid)
      expect(fromDid.verify(message, sig)).toBe(f.validSignature)
      expect(fromDoc.verify(message, sig)).toBe(f.validSignature)
    })
  }

  it('rejects a valid signature over other bytes, and the high-S twin of a valid one', () => {
    for (const f of signatures.filter((s) => s.validSignature)) {
      const key = parseDidKey(f.publicKeyDid)
      const message = b64(f.messageBase64)
      const sig = b64(f.signatureBase64)
      const tampered = new Uint8Array(message)
      tampered[0] = (tampered[0] as number) ^ 1
      expect(key.verify(tampered, sig)).toBe(false)
      const n = key.curve === 'k256' ? K256_N : P256_N
      expect(key.verify(message, withS(sig, n - sOf(sig)))).toBe(false)
      // wrong lengths and garbage never throw
      expect(key.verify(message, sig.subarray(0, 63))).toBe(false)
      expect(key.verify(message, new Uint8Array(64))).toBe(false)
      expect(key.verify(message, new Uint8Array(64).fill(0xff))).toBe(false)
      expect(key.verify(message, new Uint8Array(0))).toBe(false)
    }
  })
})

describe('did:key encodings (w3c vectors)', () => {
  it('K-256: the public key derived from each private key has the listed did:key', () => {
    for (const { privateKeyBytesHex, publicDidKey } of k256DidKeys) {
      const priv = Buffer.from(privateKeyBytesHex, 'hex')
      const compressed = secp256k1.publicKeyCreate(priv, true)
      const key = parseDidDocKey('EcdsaSecp256k1VerificationKey2019', `z${toBase58Btc(compressed)}`)
      expect(key.didKey).toBe(publicDidKey)
      const uncompressed = secp256k1.publicKeyCreate(priv, false)
      expect(parseDidDocKey('EcdsaSecp256k1VerificationKey2019', `z${toBase58Btc(uncompressed)}`).didKey).toBe(publicDidKey)
      expect(parseDidKey(publicDidKey).curve).toBe('k256')
      // a signature made with the private key verifies
      const message = new TextEncoder().encode(publicDidKey)
      const { signature } = secp256k1.ecdsaSign(sha256(message), priv)
      expect(parseDidKey(publicDidKey).verify(message, signature)).toBe(true)
    }
  })

  it('P-256: the public key derived from each private key has the listed did:key', () => {
    for (const { privateKeyBytesBase58, publicDidKey } of p256DidKeys) {
      const ecdh = createECDH('prime256v1')
      ecdh.setPrivateKey(Buffer.from(fromBase58Btc(privateKeyBytesBase58)))
      const compressed = ecdh.getPublicKey(null, 'compressed')
      const uncompressed = ecdh.getPublicKey()
      expect(parseDidDocKey('EcdsaSecp256r1VerificationKey2019', `z${toBase58Btc(compressed)}`).didKey).toBe(publicDidKey)
      expect(parseDidDocKey('EcdsaSecp256r1VerificationKey2019', `z${toBase58Btc(uncompressed)}`).didKey).toBe(publicDidKey)
      const key = parseDidKey(publicDidKey)
      expect(key.curve).toBe('p256')
      expect(parseDidDocKey('Multikey', publicDidKey.slice('did:key:'.length)).didKey).toBe(publicDidKey)
      // sign with node:crypto and normalise to low-S, as atproto requires
      const jwk = {
        kty: 'EC',
        crv: 'P-256',
        d: Buffer.from(fromBase58Btc(privateKeyBytesBase58)).toString('base64url'),
        x: uncompressed.subarray(1, 33).toString('base64url'),
        y: uncompressed.subarray(33).toString('base64url'),
      }
      const privateKey = createPrivateKey({ key: jwk, format: 'jwk' })
      const message = new TextEncoder().encode('hello p256')
      let sig: Uint8Array = cryptoSign('sha256', message, { key: privateKey, dsaEncoding: 'ieee-p1363' })
      if (sOf(sig) > P256_N / 2n) sig = withS(sig, P256_N - sOf(sig))
      expect(key.verify(message, sig)).toBe(true)
      expect(key.verify(message, withS(sig, P256_N - sOf(sig)))).toBe(false)
      // DER encoding of the same signature is rejected
      const der = cryptoSign('sha256', message, { key: privateKey, dsaEncoding: 'der' })
      expect(key.verify(message, der)).toBe(false)
    }
  })
})

describe('DID document keys', () => {
  it('reads the legacy uncompressed keys of the PDS scenario and matches their did:key', () => {
    const docs = fixture<{
      docs: Record<string, { doc: { verificationMethod: { id: string; type: string; publicKeyMultibase: string }[] }; auditLog: { operation: { verificationMethods?: { atproto: string } } }[] }>
    }>('pds-scenario/did-docs.json').docs
    let checked = 0
    for (const { doc, auditLog } of Object.values(docs)) {
      const method = doc.verificationMethod.find((m) => m.id === '#atproto')!
      const key = parseDidDocKey(method.type, method.publicKeyMultibase)
      const last = auditLog[auditLog.length - 1]!.operation.verificationMethods?.atproto
      if (last !== undefined) {
        expect(key.didKey).toBe(last)
        checked++
      }
    }
    expect(checked).toBeGreaterThan(0)
  })

  it('reads the same key in Multikey and legacy uncompressed form (indigo identity fixtures)', () => {
    const multikey = parseDidDocKey('Multikey', 'zQ3shXjHeiBuRCKmM36cuYnm7YEMzhGnCmCyW92sRJ9pribSF')
    const legacy = parseDidDocKey(
      'EcdsaSecp256k1VerificationKey2019',
      'zQYEBzXeuTM9UR3rfvNag6L3RNAs5pQZyYPsomTsgQhsxLdEgCrPTLgFna8yqCnxPpNT7DBk6Ym3dgPKNu86vt9GR',
    )
    expect(legacy.didKey).toBe('did:key:zQ3shXjHeiBuRCKmM36cuYnm7YEMzhGnCmCyW92sRJ9pribSF')
    expect(multikey.didKey).toBe(legacy.didKey)
  })

  it('rejects malformed keys with KeyError bad-key', () => {
    expect(keyError(() => parseDidKey('did:web:example.com')).reason).toBe('bad-key')
    expect(keyError(() => parseDidKey('did:key:abc')).reason).toBe('bad-key')
    expect(keyError(() => parseDidKey('did:key:z0OIl')).reason).toBe('bad-key')
    // ed25519 multicodec (0xed 0x01) is not an atproto signing key
    expect(keyError(() => parseMultikey(`z${toBase58Btc(new Uint8Array([0xed, 0x01, ...new Uint8Array(32)]))}`)).reason).toBe('bad-key')
    // right prefix, wrong length
    expect(keyError(() => parseMultikey(`z${toBase58Btc(new Uint8Array([0xe7, 0x01, 2, 3]))}`)).reason).toBe('bad-key')
    // right length, not a point on the curve
    const offCurve = new Uint8Array(33).fill(0xff)
    offCurve[0] = 0x02
    expect(keyError(() => parseMultikey(`z${toBase58Btc(new Uint8Array([0xe7, 0x01, ...offCurve]))}`)).reason).toBe('bad-key')
    expect(keyError(() => parseMultikey(`z${toBase58Btc(new Uint8Array([0x80, 0x24, ...offCurve]))}`)).reason).toBe('bad-key')
    expect(keyError(() => parseDidDocKey('JsonWebKey2020', 'zabc')).reason).toBe('bad-key')
    expect(keyError(() => parseDidDocKey('toString', 'zabc')).reason).toBe('bad-key')
  })

  it('keys are immutable', () => {
    const key = parseDidKey(signatures[1]!.publicKeyDid)
    expect(Object.isFrozen(key)).toBe(true)
  })
})

describe('native secp256k1', () => {
  it('uses the native binding', () => {
    expect(() => assertNativeSecp256k1()).not.toThrow()
  })
})
