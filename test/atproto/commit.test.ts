import { CidLinkWrapper, encode, toBytes, type BytesWrapper } from '@atcute/cbor'
import secp256k1 from 'secp256k1'
import { describe, expect, it } from 'vitest'
import { readCarSlice } from '../../src/atproto/car.js'
import { cidForCbor, sha256 } from '../../src/atproto/cid.js'
import { decodeCommit, unsignedCommitBytes, verifyCommitSignature } from '../../src/atproto/commit.js'
import { CommitError } from '../../src/atproto/errors.js'
import { parseDidDocKey, parseDidKey } from '../../src/atproto/keys.js'
import { mstLookup } from '../../src/atproto/mst/index.js'
import { toBase58Btc } from '@atcute/multibase'
import { signCommit } from './support/events.js'
import { INDIGO_COMMITS, indigoCommitBody } from './support/fixtures.js'

const PRIVATE_KEY = new Uint8Array(32).fill(7)
const KEY = parseDidDocKey('EcdsaSecp256k1VerificationKey2019', `z${toBase58Btc(secp256k1.publicKeyCreate(PRIVATE_KEY, true))}`)
const DATA = cidForCbor(new Uint8Array([0xa2, 0x61, 0x65, 0x80, 0x61, 0x6c, 0xf6]))

function commitError(fn: () => unknown): CommitError {
  try {
    fn()
  } catch (err) {
    if (err instanceof CommitError) return err
    throw err
  }
  throw new Error('expected a CommitError')
}

/** A commit map with a valid signature, then altered by `change` (not re-signed). */
function block(change: (m: Record<string, unknown>) => void = () => {}): Uint8Array {
  const m: Record<string, unknown> = {
    did: 'did:plc:abc',
    version: 3,
    data: new CidLinkWrapper(DATA),
    rev: '3lhhxizu5wr2d',
    prev: null,
    sig: toBytes(new Uint8Array(64).fill(1)),
  }
  change(m)
  return encode(m)
}

describe('decodeCommit', () => {
  it('reads the real firehose commits and proves their ops against the new tree', () => {
    let proven = 0
    for (const path of INDIGO_COMMITS) {
      const body = indigoCommitBody(path)
      const slice = readCarSlice((body.blocks as BytesWrapper).buf)
      const commit = decodeCommit(slice.blocks.get(slice.roots[0]!)!)
      expect(commit.did).toBe(body.repo)
      expect(commit.rev).toBe(body.rev)
      expect(commit.prev === null || commit.prev.length === 36).toBe(true)
      expect(commit.sig.length).toBe(64)
      expect(Object.keys(commit.unsigned).sort()).toEqual(['data', 'did', 'prev', 'rev', 'version'])
      // the signature recovers to a key that verifies it (no DID documents for these accounts)
      const digest = sha256(unsignedCommitBytes(commit))
      const recovered = [0, 1].map((recid) => {
        try {
          return secp256k1.ecdsaRecover(commit.sig, recid, digest, true)
        } catch {
          return null
        }
      })
      const key = recovered.find((k) => k !== null)!
      expect(verifyCommitSignature(commit, parseDidKey(`did:key:z${toBase58Btc(new Uint8Array([0xe7, 0x01, ...key]))}`))).toBe(true)
      expect(verifyCommitSignature(commit, KEY)).toBe(false)
      for (const op of body.ops as { action: string; path: string; cid: CidLinkWrapper }[]) {
        expect(op.action).toBe('create')
        const found = mstLookup(commit.data, slice.blocks, op.path)
        expect(found && Buffer.from(found).equals(Buffer.from(op.cid.bytes))).toBe(true)
        expect(slice.blocks.has(op.cid.bytes)).toBe(true)
        proven++
      }
    }
    expect(proven).toBe(1 + 1 + 42 + 1)
  })

  it('verifies a signature made over the commit without sig, keeping unknown fields', () => {
    const { block: signed } = signCommit('k256', PRIVATE_KEY, { did: 'did:plc:abc', rev: '3lhhxizu5wr2d', data: DATA, extra: { zz: 'x' } })
    const commit = decodeCommit(signed)
    expect(commit.unsigned.zz).toBe('x')
    expect(verifyCommitSignature(commit, KEY)).toBe(true)
    const tampered = decodeCommit(signed)
    tampered.unsigned.zz = 'y'
    expect(verifyCommitSignature(tampered, KEY)).toBe(false)
  })

  it('rejects structural problems with CommitError bad-commit', () => {
    expect(decodeCommit(block()).did).toBe('did:plc:abc')
    const cases: [string, Uint8Array][] = [
      ['version 2', block((m) => (m.version = 2))],
      ['no version', block((m) => delete m.version)],
      ['no prev', block((m) => delete m.prev)],
      ['prev not a link', block((m) => (m.prev = 'x'))],
      ['short sig', block((m) => (m.sig = toBytes(new Uint8Array(63))))],
      ['DER-length sig', block((m) => (m.sig = toBytes(new Uint8Array(71))))],
      ['sig not bytes', block((m) => (m.sig = 'sig'))],
      ['no sig', block((m) => delete m.sig)],
      ['bad did', block((m) => (m.did = 'did:plc'))],
      ['bad rev', block((m) => (m.rev = '3lhhxizu5wr2'))],
      ['data missing', block((m) => delete m.data)],
      ['data a raw CID', block((m) => (m.data = new CidLinkWrapper(new Uint8Array([1, 0x55, ...DATA.subarray(2)]))))],
      ['not a map', encode([1, 2])],
      ['garbage', new Uint8Array([0xff, 0xfe])],
      ['trailing bytes', new Uint8Array([...block(), 0x00])],
    ]
    for (const [name, bytes] of cases) expect(commitError(() => decodeCommit(bytes)).reason, name).toBe('bad-commit')
  })

  it('rejects a commit block with map keys out of canonical order', () => {
    // {version: 3, did: ...}: 'version' written before 'did'
    const bytes = new Uint8Array([0xa2, 0x67, ...Buffer.from('version'), 0x03, 0x63, ...Buffer.from('did'), 0x61, 0x78])
    expect(commitError(() => decodeCommit(bytes)).message).toMatch(/canonical/)
  })
})
