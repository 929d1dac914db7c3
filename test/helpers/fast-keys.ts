/**
 * Signing keypairs with the same interface as @atproto/crypto's, but signing
 * natively (libsecp256k1 binding, node:crypto for P-256) — 10× faster than
 * noble on this machine, which is what makes corpus generation tolerable.
 * Signatures are compact 64-byte low-S, exactly what @atproto/crypto emits.
 */
import { createECDH, createHash, createPrivateKey, randomBytes, sign as nodeSign, type KeyObject } from 'node:crypto'
import { formatDidKey, P256_JWT_ALG, SECP256K1_JWT_ALG, type ExportableKeypair } from '@atproto/crypto'
import secp256k1 from 'secp256k1'

export type KeyType = 'secp256k1' | 'p256'

const P256_N = 0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551n
const P256_HALF_N = P256_N >> 1n

function sha256(msg: Uint8Array): Uint8Array {
  return createHash('sha256').update(msg).digest()
}

export class NativeSecp256k1Keypair implements ExportableKeypair {
  readonly jwtAlg = SECP256K1_JWT_ALG
  private readonly privateKey: Uint8Array
  private readonly didKey: string

  constructor(privateKey: Uint8Array) {
    if (!secp256k1.privateKeyVerify(privateKey)) throw new Error('invalid secp256k1 private key')
    this.privateKey = privateKey
    this.didKey = formatDidKey(SECP256K1_JWT_ALG, secp256k1.publicKeyCreate(privateKey, true))
  }
  static generate(): NativeSecp256k1Keypair {
    for (;;) {
      const key = new Uint8Array(randomBytes(32))
      if (secp256k1.privateKeyVerify(key)) return new NativeSecp256k1Keypair(key)
    }
  }
  did(): string {
    return this.didKey
  }
  async sign(msg: Uint8Array): Promise<Uint8Array> {
    // libsecp256k1 always produces normalized (low-S) signatures.
    return secp256k1.ecdsaSign(sha256(msg), this.privateKey).signature
  }
  async export(): Promise<Uint8Array> {
    return this.privateKey
  }
}

export class NativeP256Keypair implements ExportableKeypair {
  readonly jwtAlg = P256_JWT_ALG
  private readonly privateKey: Uint8Array
  private readonly keyObject: KeyObject
  private readonly didKey: string

  constructor(privateKey: Uint8Array) {
    const ecdh = createECDH('prime256v1')
    ecdh.setPrivateKey(privateKey)
    const uncompressed = ecdh.getPublicKey()
    this.privateKey = privateKey
    this.keyObject = createPrivateKey({
      format: 'jwk',
      key: {
        kty: 'EC',
        crv: 'P-256',
        d: Buffer.from(privateKey).toString('base64url'),
        x: uncompressed.subarray(1, 33).toString('base64url'),
        y: uncompressed.subarray(33, 65).toString('base64url'),
      },
    })
    this.didKey = formatDidKey(P256_JWT_ALG, ecdh.getPublicKey(null, 'compressed'))
  }
  static generate(): NativeP256Keypair {
    const ecdh = createECDH('prime256v1')
    ecdh.generateKeys()
    const raw = ecdh.getPrivateKey()
    const key = new Uint8Array(32)
    key.set(raw, 32 - raw.length) // getPrivateKey drops leading zero bytes
    return new NativeP256Keypair(key)
  }
  did(): string {
    return this.didKey
  }
  async sign(msg: Uint8Array): Promise<Uint8Array> {
    const sig = nodeSign('sha256', msg, { key: this.keyObject, dsaEncoding: 'ieee-p1363' })
    // node:crypto does not normalize; atproto requires low-S.
    const s = BigInt('0x' + sig.subarray(32).toString('hex'))
    if (s > P256_HALF_N) sig.set(Buffer.from((P256_N - s).toString(16).padStart(64, '0'), 'hex'), 32)
    return new Uint8Array(sig)
  }
  async export(): Promise<Uint8Array> {
    return this.privateKey
  }
}

export function generateKeypair(keyType: KeyType): ExportableKeypair {
  return keyType === 'p256' ? NativeP256Keypair.generate() : NativeSecp256k1Keypair.generate()
}

export function importKeypair(keyType: KeyType, privateKey: Uint8Array): ExportableKeypair {
  return keyType === 'p256' ? new NativeP256Keypair(privateKey) : new NativeSecp256k1Keypair(privateKey)
}
