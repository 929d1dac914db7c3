/**
 * Untrimmed tops (src/atproto/mst/untrimmed-top.ts): @atproto/repo, the reference PDS's
 * repo code, leaves pointer-only nodes on top of the tree when a create follows the
 * emptying of a repo. Random create/update/delete sequences that keep emptying and
 * refilling small repos, every commit verified strict by verifyCommitEvent, its collection
 * changes checked against the repo's real contents.
 */
import { describe, expect, it } from 'vitest'
import { CidLinkWrapper, type BytesWrapper } from '@atcute/cbor'
import { BlockMap } from '../../src/atproto/blocks.js'
import { readCarSlice } from '../../src/atproto/car.js'
import { cidForCbor } from '../../src/atproto/cid.js'
import { parseDidKey } from '../../src/atproto/keys.js'
import {
  MAX_UNTRIMMED_TOP_LAYER,
  MstTree,
  buildMst,
  decodeNode,
  encodeNode,
  keyHeight,
  mstEntries,
  mstLookup,
  untrimmedTopIs,
} from '../../src/atproto/mst/index.js'
import { verifyCommitEvent } from '../../src/atproto/verify.js'
import { decodeFrame, encodeEventFrame } from '../helpers/frames.js'
import { Rng } from '../helpers/records.js'
import { TestAccount, type CommitEvent, type WriteSpec } from '../helpers/repo-builder.js'
import { mstErrorReason, valueCid } from './mst-util.js'

const COLLECTIONS = ['app.bsky.feed.like', 'app.bsky.feed.post', 'com.example.thing']

function rkey(rng: Rng): string {
  const alphabet = '234567abcdefghijklmnopqrstuvwxyz'
  let s = '3l'
  for (let i = 0; i < 11; i++) s += alphabet[rng.int(alphabet.length)]
  return s
}

const collectionOf = (path: string) => path.slice(0, path.indexOf('/'))

function shuffled<T>(rng: Rng, items: readonly T[]): T[] {
  const out = [...items]
  for (let i = out.length - 1; i > 0; i--) {
    const j = rng.int(i + 1)
    ;[out[i], out[j]] = [out[j]!, out[i]!]
  }
  return out
}

/** Pointer-only nodes on top of the tree at `data`, read from the commit's own blocks. */
function pointerOnlyLevels(blocks: BlockMap, data: Uint8Array): number {
  let levels = 0
  let node = decodeNode(blocks.get(data)!)
  while (node.keys.length === 0 && node.kids[0] !== null) {
    levels++
    node = decodeNode(blocks.get(node.kids[0]!)!)
  }
  return levels
}

describe('untrimmed tops from @atproto/repo', () => {
  const STRICT = { strict: true, hasStoredHead: true }
  const otherData = cidForCbor(Uint8Array.of(0xa0))
  it('random sequences that empty and refill repos: every commit verifies strict, with its collection changes', async () => {
    const rng = new Rng(20261202)
    const accounts: TestAccount[] = []
    for (let i = 0; i < 4; i++) {
      const account = await TestAccount.create()
      await account.genesis()
      accounts.push(account)
    }
    const levelsBefore = new Map<string, number>()
    let untrimmedAfter = 0
    let untrimmedBefore = 0
    let trimmedByInversion = 0
    let fromStorageUntrimmed = 0
    const STEPS = 500
    for (let step = 0; step < STEPS; step++) {
      const account = rng.pick(accounts)
      const paths = [...account.recordPaths]
      // Half the commits start from the stored repo, as the reference PDS writes.
      const fromStorage = rng.chance(0.5)
      const create = (): WriteSpec => ({ action: 'create', collection: rng.pick(COLLECTIONS), rkey: rkey(rng), record: { $type: 'x', step } })
      let writes: WriteSpec[]
      const roll = rng.next()
      // Small repos (up to ~8 records), so they empty often.
      if (paths.length === 0 || (roll < 0.3 && paths.length < 8)) writes = [create()]
      else if (roll < 0.55) writes = [{ action: 'delete', path: rng.pick(paths) }]
      else if (roll < 0.62) writes = [{ action: 'update', path: rng.pick(paths), record: { $type: 'x', step, updated: true } }]
      else if (roll < 0.9) {
        // Empty the repo and refill it in one commit (the reference PDS's own untrimmed case).
        const order = shuffled(rng, paths)
        writes = [...order.map((path): WriteSpec => ({ action: 'delete', path })), create()]
        for (let n = rng.int(3); n > 0; n--) writes.push(create())
      } else {
        // A mix: a delete, an update and a create.
        const [a, b] = shuffled(rng, paths)
        writes = [{ action: 'delete', path: a! }, create()]
        if (b !== undefined) writes.push({ action: 'update', path: b, record: { $type: 'x', step, updated: true } })
      }
      const event: CommitEvent = await account.commit(writes, { fromStorage })
      const body = decodeFrame(encodeEventFrame(event, step + 1)).body
      const key = parseDidKey(account.signingKey.did())
      const result = verifyCommitEvent(body, key, STRICT)
      const shapeNote = `step ${step} (${writes.map((w) => w.action).join(', ')}${fromStorage ? ', from storage' : ''})`
      if (!result.ok) throw new Error(`${shapeNote}: ${result.reason}: ${result.message}`)

      const car = readCarSlice((body.blocks as BytesWrapper).buf)
      const levels = pointerOnlyLevels(car.blocks, event.meta.data.bytes)
      if (levels > 0) untrimmedAfter++
      if (levels > 0 && fromStorage) fromStorageUntrimmed++
      if ((levelsBefore.get(account.did) ?? 0) > 0) {
        untrimmedBefore++
        // Undoing a create trims the top: the inversion had to find prevData's untrimmed form.
        if (writes.some((w) => w.action === 'create')) trimmedByInversion++
        // Which is still the one tree: any other prevData is a mismatch.
        const wrong = verifyCommitEvent({ ...body, prevData: new CidLinkWrapper(otherData) }, key, STRICT)
        expect(wrong.ok ? 'accepted' : wrong.reason, shapeNote).toBe('inversion-mismatch')
      }
      levelsBefore.set(account.did, levels)

      // Collection changes against the repo's contents after the commit.
      const created = new Set(event.meta.ops.filter((o) => o.action === 'create').map((o) => collectionOf(o.path)))
      const remaining = new Set(account.recordPaths.map(collectionOf))
      const emptied = new Set(
        event.meta.ops.filter((o) => o.action === 'delete' && !created.has(collectionOf(o.path)) && !remaining.has(collectionOf(o.path))).map((o) => collectionOf(o.path)),
      )
      const { collections } = result.facts
      expect([...collections.gained].sort(), shapeNote).toEqual([...created].sort())
      expect([...collections.emptied].sort(), shapeNote).toEqual([...emptied].sort())
      expect(collections.undecided, shapeNote).toEqual([])
    }
    // The sequence met the shapes it is about (the seed gives 28, 6, 27 and 19): commits leaving
    // an untrimmed top, also when starting from storage, and commits whose prevData is one,
    // most of them undoing a create (the inversion trims, prevData is the untrimmed form).
    expect(untrimmedAfter).toBeGreaterThanOrEqual(20)
    expect(fromStorageUntrimmed).toBeGreaterThanOrEqual(4)
    expect(untrimmedBefore).toBeGreaterThanOrEqual(20)
    expect(trimmedByInversion).toBeGreaterThanOrEqual(10)
  }, 60_000)
})

describe('loading and matching untrimmed tops', () => {
  const enc = new TextEncoder()
  const leaf = valueCid(7)
  const candidates = Array.from({ length: 400 }, (_, i) => `com.example.record/k${i.toString().padStart(3, '0')}`)
  // A layer-1 key (with another below it) under two pointer-only nodes: a root at layer 3.
  const key = candidates.filter((k) => keyHeight(k) === 1)[1]!
  const core = buildMst([[key, leaf]])
  const blocks = new BlockMap()
  for (const [c, b] of core.blocks.entries()) blocks.set(c, b)
  const wrap = (child: Uint8Array): Uint8Array => {
    const bytes = encodeNode([], [], [child])
    const c = cidForCbor(bytes)
    blocks.set(c, bytes)
    return c
  }
  const mid = wrap(core.root)
  const top = wrap(mid)

  it('a pointer-only root takes its layer from below and reads like the trimmed tree', () => {
    expect(MstTree.load(top, blocks).root!.layer).toBe(3)
    expect(MstTree.load(mid, blocks).root!.layer).toBe(2)
    expect(mstLookup(top, blocks, key)).toEqual(leaf)
    expect(mstLookup(top, blocks, 'com.example.record/zzz')).toBeNull()
    expect(mstEntries(top, blocks).map(([k]) => k)).toEqual([key])
  })

  it('untrimmedTopIs recognises the tree under any number of pointer-only nodes, and nothing else', () => {
    const coreLayer = keyHeight(key)
    expect(untrimmedTopIs(core.root, coreLayer, mid)).toBe(true)
    expect(untrimmedTopIs(core.root, coreLayer, top)).toBe(true)
    expect(untrimmedTopIs(core.root, coreLayer, core.root)).toBe(false)
    expect(untrimmedTopIs(mid, coreLayer + 1, mid)).toBe(false)
    expect(untrimmedTopIs(core.root, coreLayer, valueCid(8))).toBe(false)
    // A tree loaded untrimmed, changed by a put only, keeps its shape; removing a key trims it.
    const tree = MstTree.load(top, blocks)
    tree.put(enc.encode(key), valueCid(9))
    expect(tree.root!.layer).toBe(3)
    tree.put(enc.encode(key), leaf)
    expect(tree.rootCid()).toEqual(top)
    expect(tree.hasUntrimmedForm(mid)).toBe(true)
    expect(tree.hasUntrimmedForm(core.root)).toBe(true)
  })

  it('still refused: an empty node under a pointer-only root, a chain above the layer bound, a wrong-height key below', () => {
    const emptyBytes = Uint8Array.of(0xa2, 0x61, 0x65, 0x80, 0x61, 0x6c, 0xf6)
    const emptyCid = cidForCbor(emptyBytes)
    blocks.set(emptyCid, emptyBytes)
    expect(mstErrorReason(() => MstTree.load(wrap(emptyCid), blocks))).toBe('bad-mst')
    let high = core.root
    for (let layer = keyHeight(key) + 1; layer <= MAX_UNTRIMMED_TOP_LAYER; layer++) high = wrap(high)
    expect(MstTree.load(high, blocks).root!.layer).toBe(MAX_UNTRIMMED_TOP_LAYER)
    expect(mstErrorReason(() => MstTree.load(wrap(high), blocks))).toBe('bad-mst')
    // Below a pointer-only root, keys are still checked at the layer the chain implies: a
    // layer-1 node whose left child holds another layer-1 key (a child must be at layer 0).
    const other = candidates.find((k) => k < key && keyHeight(k) === 1)!
    const wrong = encodeNode([enc.encode(other)], [leaf], [null, null])
    const wrongCid = cidForCbor(wrong)
    blocks.set(wrongCid, wrong)
    const node1 = encodeNode([enc.encode(key)], [leaf], [wrongCid, null])
    const node1Cid = cidForCbor(node1)
    blocks.set(node1Cid, node1)
    const bad = wrap(wrap(node1Cid))
    expect(MstTree.load(bad, blocks).root!.layer).toBe(3)
    expect(mstErrorReason(() => mstLookup(bad, blocks, other))).toBe('bad-mst')
  })
})
