import { CidLinkWrapper, decode, decodeFirst, encode, toBytes, type BytesWrapper } from '@atcute/cbor'
import { toBase58Btc } from '@atcute/multibase'
import secp256k1 from 'secp256k1'
import { WriteOpAction } from '@atproto/repo'
import { beforeAll, describe, expect, it } from 'vitest'
import { readCarSlice } from '../../src/atproto/car.js'
import { cidForCbor, sha256 } from '../../src/atproto/cid.js'
import { decodeCommit, unsignedCommitBytes } from '../../src/atproto/commit.js'
import { FrameError, decodeFrame, type MessageFrame } from '../../src/atproto/frame.js'
import { parseDidDocKey, parseDidKey, type PublicKey } from '../../src/atproto/keys.js'
import { makeTid } from '../../src/atproto/tid.js'
import { verifyCommitEvent, verifySyncEvent, type VerifyOptions } from '../../src/atproto/verify.js'
import {
  TestRepo,
  commitBody,
  createWrite,
  signCommit,
  syncBody,
  throughWire,
  writeCar,
  type CommitParts,
} from './support/events.js'
import { INDIGO_COMMITS, indigoCommitBody, readFixture, scenarioFrames } from './support/fixtures.js'

const STRICT: VerifyOptions = { strict: true, hasStoredHead: true }
const LENIENT: VerifyOptions = { strict: false, hasStoredHead: true }
const COLLECTION = 'app.bsky.feed.post'

function reasonOf(result: ReturnType<typeof verifyCommitEvent> | ReturnType<typeof verifySyncEvent>): string {
  return result.ok ? 'ok' : result.reason
}

function verifyWire(body: Record<string, unknown>, key: PublicKey, options: VerifyOptions = STRICT) {
  return verifyCommitEvent(throughWire('#commit', body).body, key, options)
}

describe('PDS scenario frames', () => {
  const docs = (JSON.parse(readFixture('pds-scenario/did-docs.json')) as {
    docs: Record<string, { doc: { verificationMethod: { id: string; type: string; publicKeyMultibase: string }[] } }>
  }).docs

  function keyFor(did: string): PublicKey {
    const method = docs[did]!.doc.verificationMethod.find((m) => m.id === '#atproto')!
    return parseDidDocKey(method.type, method.publicKeyMultibase)
  }

  it('every #commit and #sync verifies in strict mode, and other frames decode', () => {
    const frames = scenarioFrames()
    expect(frames.length).toBe(29)
    const heads = new Set<string>()
    const counts = { commit: 0, sync: 0, other: 0, ops: 0 }
    // the capture is from 2026-11-22; pin the clock so the future-rev window is realistic
    const nowMs = Date.parse('2026-11-22T13:30:00Z')
    for (const { t, b64 } of frames) {
      const frame = decodeFrame(new Uint8Array(Buffer.from(b64, 'base64'))) as MessageFrame
      expect(frame.t).toBe(t)
      if (t === '#commit') {
        const did = frame.body.repo as string
        const result = verifyCommitEvent(frame.body, keyFor(did), { strict: true, hasStoredHead: heads.has(did), nowMs })
        expect(result.ok ? 'ok' : `${result.reason}: ${result.message}`).toBe('ok')
        if (!result.ok) continue
        expect(result.facts.tolerated).toEqual([])
        expect(result.facts.did).toBe(did)
        expect(result.facts.rev).toBe(frame.body.rev)
        // a genesis commit has no prevData; every later one has
        expect(result.facts.prevData === null).toBe(!heads.has(did))
        counts.ops += result.facts.ops.length
        heads.add(did)
        counts.commit++
      } else if (t === '#sync') {
        const did = frame.body.did as string
        const result = verifySyncEvent(frame.body, keyFor(did), { strict: true, hasStoredHead: heads.has(did), nowMs })
        expect(result.ok ? 'ok' : `${result.reason}: ${result.message}`).toBe('ok')
        counts.sync++
      } else {
        counts.other++
      }
    }
    expect(counts).toEqual({ commit: 12, sync: 4, other: 13, ops: 11 })
  })

  it('a scenario commit checked with another account key is bad-signature', () => {
    const frames = scenarioFrames().filter((f) => f.t === '#commit')
    const a = decodeFrame(new Uint8Array(Buffer.from(frames[0]!.b64, 'base64'))) as MessageFrame
    const b = decodeFrame(new Uint8Array(Buffer.from(frames[1]!.b64, 'base64'))) as MessageFrame
    expect(a.body.repo).not.toBe(b.body.repo)
    const nowMs = Date.parse('2026-11-22T13:30:00Z')
    expect(reasonOf(verifyCommitEvent(a.body, keyFor(b.body.repo as string), { strict: true, hasStoredHead: false, nowMs }))).toBe(
      'bad-signature',
    )
  })

  it('a scenario commit whose rev is 10 minutes ahead of the clock is future-rev', () => {
    const frame = scenarioFrames().find((f) => f.t === '#commit')!
    const body = (decodeFrame(new Uint8Array(Buffer.from(frame.b64, 'base64'))) as MessageFrame).body
    // captured at 13:20:31Z: with the clock at 13:10:31Z its rev is 10 minutes ahead
    const result = verifyCommitEvent(body, keyFor(body.repo as string), {
      strict: true,
      hasStoredHead: false,
      nowMs: Date.parse('2026-11-22T13:10:31Z'),
    })
    expect(reasonOf(result)).toBe('future-rev')
  })
})

describe('real firehose commits (pre-Sync-1.1)', () => {
  it('verify with no stored head, and in lenient mode record the missing prevData', () => {
    for (const path of INDIGO_COMMITS) {
      const raw = indigoCommitBody(path)
      // No DID documents come with these commits: use the key their signature recovers to, so
      // everything but key binding is exercised (the signature check itself still runs).
      const slice = readCarSlice((raw.blocks as BytesWrapper).buf)
      const commit = decodeCommit(slice.blocks.get(slice.roots[0]!)!)
      const point = secp256k1.ecdsaRecover(commit.sig, 0, sha256(unsignedCommitBytes(commit)), true)
      const key = parseDidKey(`did:key:z${toBase58Btc(new Uint8Array([0xe7, 0x01, ...point]))}`)
      const nowMs = Date.parse(raw.time as string)
      const body = throughWire('#commit', raw).body
      const first = verifyCommitEvent(body, key, { strict: true, hasStoredHead: false, nowMs })
      expect(first.ok ? 'ok' : first.message).toBe('ok')
      if (first.ok) {
        expect(first.facts.ops.length).toBe((raw.ops as unknown[]).length)
        expect(first.facts.prevData).toBeNull()
      }
      expect(reasonOf(verifyCommitEvent(body, key, { strict: true, hasStoredHead: true, nowMs }))).toBe('missing-prevdata')
      const lenient = verifyCommitEvent(body, key, { strict: false, hasStoredHead: true, nowMs })
      expect(lenient.ok && lenient.facts.tolerated).toEqual(['missing-prevdata'])
    }
  })
})

describe('commits built with @atproto/repo', () => {
  let k256: TestRepo
  let p256: TestRepo
  let create: CommitParts
  let update: CommitParts
  let remove: CommitParts
  let multi: CommitParts
  let p256Create: CommitParts

  beforeAll(async () => {
    k256 = await TestRepo.create({ curve: 'k256', records: 300 })
    p256 = await TestRepo.create({ curve: 'p256', records: 50 })
    create = await k256.commit([createWrite(COLLECTION, 1)])
    const rkey = create.ops[0]!.path.split('/')[1]!
    update = await k256.commit([{ action: WriteOpAction.Update, collection: COLLECTION, rkey, record: { text: 'edited' } }])
    remove = await k256.commit([{ action: WriteOpAction.Delete, collection: COLLECTION, rkey }])
    multi = await k256.commit([createWrite(COLLECTION, 2), createWrite('app.bsky.feed.like', 3), createWrite(COLLECTION, 4)])
    p256Create = await p256.commit([createWrite(COLLECTION, 5)])
  }, 60_000)

  it('accepts create, update, delete and multi-op commits in strict mode, with facts copied out of the frame', () => {
    for (const parts of [create, update, remove, multi]) {
      const frame = throughWire('#commit', commitBody(parts))
      const result = verifyCommitEvent(frame.body, k256.publicKey, STRICT)
      expect(result.ok ? 'ok' : result.message).toBe('ok')
      if (!result.ok) continue
      const f = result.facts
      expect(f.did).toBe(k256.did)
      expect(f.rev).toBe(parts.rev)
      expect(f.since).toBe(parts.since)
      expect(Buffer.from(f.commitCid).equals(Buffer.from(parts.commitCid))).toBe(true)
      expect(Buffer.from(f.dataCid).equals(Buffer.from(parts.dataCid))).toBe(true)
      expect(Buffer.from(f.prevData!).equals(Buffer.from(parts.prevData!))).toBe(true)
      expect(f.ops.map((o) => [o.action, o.path])).toEqual(parts.ops.map((o) => [o.action, o.path]))
      for (const bytes of [f.commitCid, f.dataCid, f.prevData!, ...f.ops.flatMap((o) => [o.cid, o.prev]).filter((c) => c !== null)]) {
        expect(bytes.byteLength).toBe(bytes.buffer.byteLength) // owns its buffer, does not pin the frame
      }
      expect(f.tolerated).toEqual([])
    }
    expect(update.ops[0]!.prev).toBeDefined()
    expect(remove.ops[0]!.cid).toBeNull()
  })

  it('accepts a P-256 commit', () => {
    expect(p256.publicKey.curve).toBe('p256')
    expect(reasonOf(verifyWire(commitBody(p256Create), p256.publicKey))).toBe('ok')
    expect(reasonOf(verifyWire(commitBody(p256Create), k256.publicKey))).toBe('bad-signature')
  })

  it('accepts #sync events, and rejects oversize or forged ones', () => {
    const ok = verifySyncEvent(throughWire('#sync', syncBody(multi)).body, k256.publicKey, STRICT)
    expect(ok.ok && Buffer.from(ok.facts.dataCid).equals(Buffer.from(multi.dataCid))).toBe(true)
    expect(reasonOf(verifySyncEvent(syncBody(p256Create), p256.publicKey, STRICT))).toBe('ok')
    expect(reasonOf(verifySyncEvent(syncBody(multi), p256.publicKey, STRICT))).toBe('bad-signature')
    expect(reasonOf(verifySyncEvent(syncBody(multi, { blocks: toBytes(new Uint8Array(10_001)) }), k256.publicKey, STRICT))).toBe('too-big')
    expect(reasonOf(verifySyncEvent(syncBody(multi, { did: 'did:plc:other' }), k256.publicKey, STRICT))).toBe('repo-mismatch')
    expect(reasonOf(verifySyncEvent(syncBody(multi, { rev: makeTid(1, 0) }), k256.publicKey, STRICT))).toBe('rev-mismatch')
    expect(reasonOf(verifySyncEvent(syncBody(multi, { time: 'yesterday' }), k256.publicKey, STRICT))).toBe('bad-syntax')
    expect(reasonOf(verifySyncEvent(syncBody(multi, { did: undefined }), k256.publicKey, STRICT))).toBe('bad-frame')
    const car = writeCar([multi.commitCid], [[multi.dataCid, new Uint8Array([0xa0])]])
    expect(reasonOf(verifySyncEvent(syncBody(multi, { blocks: toBytes(car) }), k256.publicKey, STRICT))).toBe('bad-block-hash')
  })

  it('prevData: required with a stored head in strict mode, tolerated in lenient mode, optional for a first commit', () => {
    const body = commitBody(create, { prevData: undefined })
    expect(reasonOf(verifyWire(body, k256.publicKey, STRICT))).toBe('missing-prevdata')
    const first = verifyWire(body, k256.publicKey, { strict: true, hasStoredHead: false })
    expect(first.ok && first.facts.prevData).toBeNull()
    const lenient = verifyWire(body, k256.publicKey, LENIENT)
    expect(lenient.ok && lenient.facts.tolerated).toEqual(['missing-prevdata'])
  })

  describe('tampered variants', () => {
    const key = () => k256.publicKey

    /** Re-sign the commit of `parts` with changed fields, returning updated parts. */
    function resign(parts: CommitParts, fields: { rev?: string; data?: Uint8Array; did?: string }): CommitParts {
      const signed = signCommit('k256', k256.privateKey, { did: fields.did ?? parts.did, rev: fields.rev ?? parts.rev, data: fields.data ?? parts.dataCid })
      return {
        ...parts,
        rev: fields.rev ?? parts.rev,
        commitCid: signed.cid,
        commitBlock: signed.block,
        blocks: [...parts.blocks.filter(([cid]) => !Buffer.from(cid).equals(Buffer.from(parts.commitCid))), [signed.cid, signed.block]],
      }
    }

    /** Replace the commit block with one whose sig is `sig` (not re-signed). */
    function withSig(parts: CommitParts, change: (sig: Uint8Array) => Uint8Array): CommitParts {
      const map = decode(parts.commitBlock) as Record<string, unknown>
      map.sig = toBytes(change((map.sig as BytesWrapper).buf))
      const block = encode(map)
      const cid = cidForCbor(block)
      return {
        ...parts,
        commitCid: cid,
        commitBlock: block,
        blocks: [...parts.blocks.filter(([c]) => !Buffer.from(c).equals(Buffer.from(parts.commitCid))), [cid, block]],
      }
    }

    it('re-signing with the right key keeps a commit valid (control for the cases below)', () => {
      expect(reasonOf(verifyWire(commitBody(resign(create, {})), key()))).toBe('ok')
    })

    it('a flipped byte in a block is bad-block-hash', () => {
      const record = create.blocks.find(([cid]) => Buffer.from(cid).equals(Buffer.from(create.ops[0]!.cid!)))!
      const flipped = new Uint8Array(record[1])
      flipped[flipped.length - 1] = flipped[flipped.length - 1]! ^ 1
      const blocks = create.blocks.map(([cid, bytes]): [Uint8Array, Uint8Array] => [cid, bytes === record[1] ? flipped : bytes])
      expect(reasonOf(verifyWire(commitBody({ ...create, blocks }), key()))).toBe('bad-block-hash')
    })

    it('a flipped byte in the signature is bad-signature', () => {
      const parts = withSig(create, (sig) => {
        const out = new Uint8Array(sig)
        out[10] = out[10]! ^ 1
        return out
      })
      expect(reasonOf(verifyWire(commitBody(parts), key()))).toBe('bad-signature')
    })

    it('a high-S signature is bad-signature', () => {
      const n = BigInt('0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141')
      const parts = withSig(create, (sig) => {
        const out = new Uint8Array(sig)
        const s = BigInt(`0x${Buffer.from(sig.subarray(32)).toString('hex')}`)
        out.set(Buffer.from((n - s).toString(16).padStart(64, '0'), 'hex'), 32)
        return out
      })
      expect(reasonOf(verifyWire(commitBody(parts), key()))).toBe('bad-signature')
      expect(reasonOf(verifyWire(commitBody(parts), key(), LENIENT))).toBe('bad-signature')
    })

    it('a 63-byte signature is bad-commit', () => {
      expect(reasonOf(verifyWire(commitBody(withSig(create, (sig) => sig.subarray(0, 63))), key()))).toBe('bad-commit')
    })

    it('a rev 10 minutes ahead is future-rev, accepted with a wider window', () => {
      const rev = makeTid((Date.now() + 10 * 60_000) * 1000, 1)
      const parts = resign(create, { rev })
      expect(reasonOf(verifyWire(commitBody(parts), key()))).toBe('future-rev')
      expect(reasonOf(verifyWire(commitBody(parts), key(), { ...STRICT, maxFutureRevMs: 15 * 60_000 }))).toBe('ok')
    })

    it('repo or rev differing from the commit is repo-mismatch / rev-mismatch', () => {
      expect(reasonOf(verifyWire(commitBody(create, { repo: 'did:plc:someoneelse' }), key()))).toBe('repo-mismatch')
      expect(reasonOf(verifyWire(commitBody(create, { rev: makeTid(Date.now() * 1000, 3) }), key()))).toBe('rev-mismatch')
      const otherDid = resign(create, { did: 'did:plc:someoneelse' })
      expect(reasonOf(verifyWire(commitBody(otherDid), key()))).toBe('repo-mismatch')
    })

    it('a CAR root that is not the commit, or a missing commit block, is rejected', () => {
      const wrongRoot = writeCar([create.dataCid], create.blocks)
      expect(reasonOf(verifyWire(commitBody(create, { blocks: toBytes(wrongRoot) }), key()))).toBe('bad-car')
      const noCommit = writeCar([create.commitCid], create.blocks.filter(([, b]) => b !== create.commitBlock))
      expect(reasonOf(verifyWire(commitBody(create, { blocks: toBytes(noCommit) }), key()))).toBe('missing-block')
      expect(reasonOf(verifyWire(commitBody(create, { blocks: toBytes(new Uint8Array([1, 2, 3])) }), key()))).toBe('bad-car')
    })

    it('a wrong CID in an op is bad-op (strict) or missing-block when no such record is sent', () => {
      const otherBlock = create.blocks.find(([cid]) => !Buffer.from(cid).equals(Buffer.from(create.ops[0]!.cid!)))![0]
      const wrong = { ...create, ops: [{ ...create.ops[0]!, cid: otherBlock }] }
      expect(reasonOf(verifyWire(commitBody(wrong), key()))).toBe('bad-op')
      const lenient = verifyWire(commitBody(wrong), key(), LENIENT)
      expect(lenient.ok && lenient.facts.tolerated).toContain('bad-op')
      const absent = { ...create, ops: [{ ...create.ops[0]!, cid: cidForCbor(new Uint8Array([0xa0])) }] }
      expect(reasonOf(verifyWire(commitBody(absent), key()))).toBe('missing-block')
    })

    it('an update whose prev is wrong does not invert to prevData', () => {
      const wrongPrev = { ...update, ops: [{ ...update.ops[0]!, prev: cidForCbor(new Uint8Array([0xa0])) }] }
      expect(reasonOf(verifyWire(commitBody(wrongPrev), key()))).toBe('inversion-mismatch')
      const lenient = verifyWire(commitBody(wrongPrev), key(), LENIENT)
      expect(lenient.ok && lenient.facts.tolerated).toEqual(['inversion-mismatch'])
    })

    it('a prevData that is not the previous root is inversion-mismatch', () => {
      expect(reasonOf(verifyWire(commitBody(create, { prevData: new CidLinkWrapper(create.dataCid) }), key()))).toBe('inversion-mismatch')
    })

    it('dropping an op is caught by the inversion', () => {
      expect(reasonOf(verifyWire(commitBody({ ...multi, ops: multi.ops.slice(1) }), key()))).toBe('inversion-mismatch')
    })

    it('a missing MST block is missing-block', () => {
      const noRoot = create.blocks.filter(([cid]) => !Buffer.from(cid).equals(Buffer.from(create.dataCid)))
      expect(noRoot.length).toBe(create.blocks.length - 1)
      expect(reasonOf(verifyWire(commitBody({ ...create, blocks: noRoot }), key()))).toBe('missing-block')
      const noRecord = create.blocks.filter(([cid]) => !Buffer.from(cid).equals(Buffer.from(create.ops[0]!.cid!)))
      expect(reasonOf(verifyWire(commitBody({ ...create, blocks: noRecord }), key()))).toBe('missing-block')
      const lenient = verifyWire(commitBody({ ...create, blocks: noRoot }), key(), LENIENT)
      expect(lenient.ok && lenient.facts.tolerated).toContain('missing-block')
    })

    it('without prevData (no inversion) the forward check catches a wrong op cid and a missing record block', () => {
      const genesis: VerifyOptions = { strict: true, hasStoredHead: false }
      expect(reasonOf(verifyWire(commitBody(create, { prevData: undefined }), key(), genesis))).toBe('ok')
      const otherBlock = create.blocks.find(([cid]) => !Buffer.from(cid).equals(Buffer.from(create.ops[0]!.cid!)))![0]
      const wrong = { ...create, prevData: null, ops: [{ ...create.ops[0]!, cid: otherBlock }] }
      expect(reasonOf(verifyWire(commitBody(wrong), key(), genesis))).toBe('bad-op')
      const noRecord = create.blocks.filter(([cid]) => !Buffer.from(cid).equals(Buffer.from(create.ops[0]!.cid!)))
      expect(reasonOf(verifyWire(commitBody({ ...create, prevData: null, blocks: noRecord }), key(), genesis))).toBe('missing-block')
      const lenient = verifyWire(commitBody({ ...create, prevData: null, blocks: noRecord }), key(), { ...genesis, strict: false })
      expect(lenient.ok && lenient.facts.tolerated).toEqual(['missing-block'])
    })

    it('ill-formed ops are bad-op in strict mode and tolerated in lenient mode', () => {
      const op = create.ops[0]!
      const variants: CommitParts['ops'][] = [
        [{ ...op, prev: op.cid! }], // create with prev
        [{ ...op, action: 'update' }], // update without prev
        [{ ...op, action: 'delete' }], // delete with cid and no prev
        [op, op], // duplicate path
      ]
      for (const ops of variants) {
        expect(reasonOf(verifyWire(commitBody({ ...create, ops }), key()))).toBe('bad-op')
        const lenient = verifyWire(commitBody({ ...create, ops }), key(), LENIENT)
        expect(lenient.ok && lenient.facts.tolerated).toContain('bad-op')
      }
      const unknownAction = commitBody(create, { ops: [{ action: 'upsert', path: op.path, cid: new CidLinkWrapper(op.cid!) }] })
      expect(reasonOf(verifyWire(unknownAction, key(), LENIENT))).toBe('bad-op')
    })

    it('bad syntax and bad field types are rejected in both modes', () => {
      const op = create.ops[0]!
      const cases: [Record<string, unknown>, string][] = [
        [commitBody(create, { repo: 'not-a-did' }), 'bad-syntax'],
        [commitBody(create, { rev: 'nope' }), 'bad-syntax'],
        [commitBody(create, { since: '2024' }), 'bad-syntax'],
        [commitBody(create, { time: '2024-01-01' }), 'bad-syntax'],
        [commitBody(create, { ops: [{ action: 'create', path: 'app.bsky.feed.post', cid: new CidLinkWrapper(op.cid!) }] }), 'bad-syntax'],
        [commitBody(create, { ops: [{ action: 'create', path: 'a/b/c', cid: new CidLinkWrapper(op.cid!) }] }), 'bad-syntax'],
        [commitBody(create, { repo: undefined }), 'bad-frame'],
        [commitBody(create, { commit: 'bafy' }), 'bad-frame'],
        [commitBody(create, { blocks: 'car' }), 'bad-frame'],
        [commitBody(create, { ops: {} }), 'bad-frame'],
        [commitBody(create, { ops: [42] }), 'bad-frame'],
        [commitBody(create, { ops: [{ action: 'create', path: op.path, cid: 'bafy' }] }), 'bad-frame'],
        [commitBody(create, { prevData: 'bafy' }), 'bad-frame'],
        [commitBody(create, { rebase: 'no' }), 'bad-frame'],
      ]
      for (const [body, reason] of cases) {
        expect(reasonOf(verifyWire(body, key(), STRICT))).toBe(reason)
        expect(reasonOf(verifyWire(body, key(), LENIENT))).toBe(reason)
      }
    })

    it('rebase / tooBig set are deprecated-flag in strict mode, tolerated in lenient mode', () => {
      expect(reasonOf(verifyWire(commitBody(create, { tooBig: true }), key()))).toBe('deprecated-flag')
      const lenient = verifyWire(commitBody(create, { rebase: true }), key(), LENIENT)
      expect(lenient.ok && lenient.facts.tolerated).toEqual(['deprecated-flag'])
    })

    it('201 ops or blocks over 2 MB are too-big', () => {
      const op = commitBody(create).ops as unknown[]
      const ops = Array.from({ length: 201 }, () => op[0])
      expect(reasonOf(verifyWire(commitBody(create, { ops }), key()))).toBe('too-big')
      expect(reasonOf(verifyWire(commitBody(create, { blocks: toBytes(new Uint8Array(2_000_001)) }), key()))).toBe('too-big')
    })

    it('a record block over 1 MB is too-big', () => {
      const big = new Uint8Array(encode({ text: 'x'.repeat(1_000_001) }))
      const bigCid = cidForCbor(big)
      const parts = { ...create, blocks: [...create.blocks, [bigCid, big] as [Uint8Array, Uint8Array]] }
      expect(reasonOf(verifyWire(commitBody(parts), key()))).toBe('too-big')
    })

    it('map keys out of canonical order or trailing bytes never reach verification: the frame is bad-frame', () => {
      const frame = throughWire('#commit', commitBody(create))
      const header = encode({ t: '#commit', op: 1 })
      // swap the first two keys of the body map ("ops" then "rev" → "rev" then "ops")
      const body = frame.bodyBytes
      const opsEnd = skipFirstEntry(body)
      const revEnd = skipFirstEntry(body, opsEnd)
      const swapped = new Uint8Array([body[0]!, ...body.subarray(opsEnd, revEnd), ...body.subarray(1, opsEnd), ...body.subarray(revEnd)])
      expect(swapped.length).toBe(body.length)
      expect(() => decodeFrame(new Uint8Array([...header, ...swapped]))).toThrow(FrameError)
      const trailing = new Uint8Array([...header, ...body, 0xf6])
      try {
        decodeFrame(trailing)
        expect.unreachable()
      } catch (err) {
        expect((err as FrameError).reason).toBe('bad-frame')
      }
    })
  })
})

/** End offset of the map entry starting at `pos` (default: the first entry), for the reorder test. */
function skipFirstEntry(body: Uint8Array, pos = 1): number {
  const [, afterKey] = decodeFirst(body.subarray(pos))
  const [, afterValue] = decodeFirst(afterKey)
  return body.length - afterValue.length
}
