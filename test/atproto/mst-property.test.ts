import { describe, expect, it } from 'vitest'
import fc from 'fast-check'
import { MST, MemoryBlockstore } from '@atproto/repo'
import { cidEquals } from '../../src/atproto/cid.js'
import {
  applyOps,
  buildMst,
  invertOps,
  keyHeight,
  mstEntries,
  mstLookup,
  MstTree,
  type MstOp,
} from '../../src/atproto/mst/index.js'
import { cidStr, exampleKeys, union, valueCid } from './mst-util.js'

const rkeyChars = 'abcdefghijklmnopqrstuvwxyz234567'
const arbRandomKey = fc
  .tuple(
    fc.constantFrom('app.bsky.feed.post', 'app.bsky.feed.like', 'com.example.record'),
    fc.string({ unit: fc.constantFrom(...rkeyChars), minLength: 1, maxLength: 13 }),
  )
  .map(([c, r]) => `${c}/${r}`)
// example_keys.txt spans heights 0–5, so every tree mixes layers.
const arbKey = fc.oneof(fc.constantFrom(...exampleKeys), arbRandomKey)

interface Scenario {
  before: Map<string, Uint8Array>
  ops: MstOp[]
  after: Map<string, Uint8Array>
}

const arbScenario: fc.Arbitrary<Scenario> = fc
  .record({
    keys: fc.uniqueArray(arbKey, { maxLength: 300, size: 'max' }),
    fresh: fc.uniqueArray(arbKey, { maxLength: 12, size: 'max' }),
    picks: fc.array(fc.tuple(fc.nat(), fc.constantFrom('update', 'delete') as fc.Arbitrary<'update' | 'delete'>), {
      maxLength: 12,
      size: 'max',
    }),
    seed: fc.nat(1000),
  })
  .map(({ keys, fresh, picks, seed }) => {
    const before = new Map(keys.map((k, i) => [k, valueCid(seed + i)] as [string, Uint8Array]))
    const after = new Map(before)
    const ops: MstOp[] = []
    const touched = new Set<string>()
    for (const path of fresh) {
      if (before.has(path)) continue
      const cid = valueCid(5000 + ops.length)
      ops.push({ action: 'create', path, cid, prev: null })
      after.set(path, cid)
      touched.add(path)
    }
    if (keys.length > 0) {
      for (const [n, action] of picks) {
        const path = keys[n % keys.length]!
        if (touched.has(path)) continue
        touched.add(path)
        const prev = before.get(path)!
        if (action === 'delete') {
          ops.push({ action, path, cid: null, prev })
          after.delete(path)
        } else {
          const cid = valueCid(9000 + ops.length)
          ops.push({ action, path, cid, prev })
          after.set(path, cid)
        }
      }
    }
    return { before, ops, after }
  })

describe('MST property: invert(apply(ops)) from the proof blocks alone', () => {
  it('returns the before root for random trees and op lists', () => {
    let maxLayer = 0
    let opsSeen = 0
    let maxKeys = 0
    fc.assert(
      fc.property(arbScenario, fc.nat(), ({ before, ops, after }, shuffleSeed) => {
        const b = buildMst(before)
        const a = applyOps(b.root, b.blocks, ops)
        // The tree shape depends on the key set only: same root as a fresh build.
        expect(cidStr(a.root)).toBe(cidStr(buildMst(after).root))
        const full = union(b.blocks, a.blocks)
        expect(mstEntries(a.root, full).map(([k]) => k)).toEqual([...after.keys()].sort())

        // Forward lookups on the proof-only partial tree.
        for (const op of ops) {
          const found = mstLookup(a.root, a.proofBlocks, op.path)
          if (op.action === 'delete') expect(found).toBeNull()
          else expect(cidEquals(found, op.cid)).toBe(true)
        }

        // Any op order inverts to the before root.
        const shuffled = [...ops]
        for (let i = shuffled.length - 1; i > 0; i--) {
          const j = (shuffleSeed + i * 7919) % (i + 1)
          ;[shuffled[i], shuffled[j]] = [shuffled[j]!, shuffled[i]!]
        }
        expect(cidStr(invertOps(a.root, a.proofBlocks, shuffled))).toBe(cidStr(b.root))

        const root = MstTree.load(b.root, b.blocks).root
        maxLayer = Math.max(maxLayer, root?.layer ?? 0)
        opsSeen += ops.length
        maxKeys = Math.max(maxKeys, before.size)
      }),
      { numRuns: 150, seed: 20260501 },
    )
    // the generator really exercised higher layers and many ops
    expect(maxLayer).toBeGreaterThanOrEqual(4)
    expect(opsSeen).toBeGreaterThan(300)
    expect(maxKeys).toBeGreaterThan(200)
  })

  it('ops touching the highest layers invert (delete/recreate the top keys)', () => {
    const keys = exampleKeys
    const before = new Map(keys.map((k, i) => [k, valueCid(i)] as [string, Uint8Array]))
    const top = [...keys].sort((x, y) => keyHeight(y) - keyHeight(x)).slice(0, 6)
    expect(keyHeight(top[0]!)).toBe(5)
    const ops: MstOp[] = top.map((path) => ({ action: 'delete', path, cid: null, prev: before.get(path)! }))
    const b = buildMst(before)
    const a = applyOps(b.root, b.blocks, ops)
    expect(cidStr(invertOps(a.root, a.proofBlocks, ops))).toBe(cidStr(b.root))
    // and the reverse commit: re-creating them
    const back: MstOp[] = ops.map((op) => ({ action: 'create', path: op.path, cid: op.prev, prev: null }))
    const full = union(b.blocks, a.blocks)
    const c = applyOps(a.root, full, back)
    expect(cidStr(c.root)).toBe(cidStr(b.root))
    expect(cidStr(invertOps(c.root, c.proofBlocks, back))).toBe(cidStr(a.root))
  })
})

type RefCid = Parameters<MST['add']>[1]

describe('cross-check against @atproto/repo 0.8.13', () => {
  it('same roots for random trees, after adds and deletes', async () => {
    // multiformats 9 (what @atproto/repo uses) ships no types NodeNext can resolve.
    const specifier: string = 'multiformats/cid'
    const { CID: MfCid } = (await import(specifier)) as { CID: { decode(bytes: Uint8Array): RefCid } }
    const samples = fc.sample(fc.uniqueArray(arbKey, { minLength: 1, maxLength: 150, size: 'max' }), { numRuns: 6, seed: 4242 })
    let compared = 0
    for (const keys of samples) {
      const store = new MemoryBlockstore()
      let ref = await MST.create(store)
      const entries: [string, Uint8Array][] = keys.map((k, i) => [k, valueCid(i)])
      for (const [k, v] of entries) ref = await ref.add(k, MfCid.decode(v))
      const ours = buildMst(entries)
      expect(cidStr(ours.root)).toBe((await ref.getPointer()).toString())

      const dels = keys.filter((_, i) => i % 3 === 0)
      for (const k of dels) ref = await ref.delete(k)
      const ops: MstOp[] = dels.map((path) => ({ action: 'delete', path, cid: null, prev: null }))
      const after = applyOps(ours.root, ours.blocks, ops)
      expect(cidStr(after.root)).toBe((await ref.getPointer()).toString())
      compared += 2
    }
    expect(compared).toBe(12)
  })
})
