import { describe, expect, it } from 'vitest'
import { BlockMap } from '../../src/atproto/blocks.js'
import {
  applyOps,
  buildMst,
  coveringProof,
  emptyRootCid,
  encodeNode,
  invertOps,
  mstEntries,
  mstLookup,
  type MstOp,
} from '../../src/atproto/mst/index.js'
import { cidForCbor } from '../../src/atproto/cid.js'
import { cid, cidStr, mstErrorReason, readFixture, subset, union, valueCid } from './mst-util.js'

interface ProofFixture {
  comment: string
  leafValue: string
  keys: string[]
  adds: string[]
  dels: string[]
  rootBeforeCommit: string
  rootAfterCommit: string
  blocksInProof: string[]
}

const fixtures = JSON.parse(readFixture('interop/firehose/commit-proof-fixtures.json')) as ProofFixture[]

function permutations<T>(items: T[]): T[][] {
  if (items.length <= 1) return [items]
  return items.flatMap((x, i) => permutations([...items.slice(0, i), ...items.slice(i + 1)]).map((rest) => [x, ...rest]))
}

describe('known MST roots (atproto mst.test.ts)', () => {
  const value = cid('bafyreie5cvv4h45feadgeuwhbcutmh6t2ceseocckahdoe6uat64zmz454')
  const root = (keys: string[]) => cidStr(buildMst(keys.map((k) => [`com.example.record/${k}`, value])).root)

  it('empty repo', () => {
    expect(cidStr(buildMst([]).root)).toBe('bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm')
    expect(cidStr(emptyRootCid())).toBe('bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm')
  })

  it('trivial, depth 2 and the 5-key tree, in any insertion order', () => {
    expect(root(['3jqfcqzm3fo2j'])).toBe('bafyreibj4lsc3aqnrvphp5xmrnfoorvru4wynt6lwidqbm2623a6tatzdu')
    expect(root(['3jqfcqzm3fx2j'])).toBe('bafyreih7wfei65pxzhauoibu3ls7jgmkju4bspy4t2ha2qdjnzqvoy33ai')
    const five = ['3jqfcqzm3fp2j', '3jqfcqzm3fr2j', '3jqfcqzm3fs2j', '3jqfcqzm3ft2j', '3jqfcqzm4fc2j']
    for (const order of permutations(five)) {
      expect(root(order)).toBe('bafyreicmahysq4n6wfuxo522m6dpiy7z7qzym3dzs756t5n7nfdgccwq7m')
    }
  })

  it('deleting everything returns to the empty root', () => {
    const keys = ['3jqfcqzm3fp2j', '3jqfcqzm3fr2j', '3jqfcqzm3fs2j', '3jqfcqzm3ft2j', '3jqfcqzm4fc2j']
    const before = buildMst(keys.map((k) => [`com.example.record/${k}`, value]))
    const ops: MstOp[] = keys.map((k) => ({ action: 'delete', path: `com.example.record/${k}`, cid: null, prev: value }))
    const after = applyOps(before.root, before.blocks, ops)
    expect(cidStr(after.root)).toBe('bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm')
    // and back: inverting the deletes from just the empty node gives the 5-key root
    expect(cidStr(invertOps(after.root, after.proofBlocks, ops))).toBe(cidStr(before.root))
  })
})

describe('commit-proof-fixtures.json', () => {
  it('has the six cases', () => expect(fixtures.length).toBe(6))

  for (const fx of fixtures) {
    it(fx.comment, () => {
      const leaf = cid(fx.leafValue)
      const before = buildMst(fx.keys.map((k) => [k, leaf]))
      expect(cidStr(before.root)).toBe(fx.rootBeforeCommit)

      const forward: MstOp[] = [
        ...fx.adds.map((path): MstOp => ({ action: 'create', path, cid: leaf, prev: null })),
        ...fx.dels.map((path): MstOp => ({ action: 'delete', path, cid: null, prev: leaf })),
      ]
      const after = applyOps(before.root, before.blocks, forward)
      expect(cidStr(after.root)).toBe(fx.rootAfterCommit)

      // Our covering proof includes every block the reference lists.
      const ours = new Set([...after.proofBlocks.entries()].map(([c]) => cidStr(c)))
      for (const c of fx.blocksInProof) expect(ours, c).toContain(c)

      // Load only the reference's proof blocks (bytes from the full new tree).
      const allAfter = union(before.blocks, after.blocks)
      const partial = subset(allAfter, fx.blocksInProof.map(cid))
      expect(partial.size).toBe(fx.blocksInProof.length)

      for (const path of fx.adds) expect(mstLookup(after.root, partial, path)).toEqual(leaf)
      for (const path of fx.dels) expect(mstLookup(after.root, partial, path)).toBeNull()

      for (const order of permutations(forward)) {
        expect(cidStr(invertOps(after.root, partial, order))).toBe(fx.rootBeforeCommit)
      }

      // the full tree after equals a fresh build of the final key set
      const finalKeys = fx.keys.filter((k) => !fx.dels.includes(k)).concat(fx.adds)
      expect(cidStr(buildMst(finalKeys.map((k) => [k, leaf])).root)).toBe(fx.rootAfterCommit)
      expect(mstEntries(after.root, allAfter).map(([k]) => k)).toEqual([...finalKeys].sort())
    })
  }
})

describe('inversion errors', () => {
  const fx = fixtures[0]!
  const leaf = cid(fx.leafValue)
  const before = buildMst(fx.keys.map((k) => [k, leaf]))
  const create: MstOp = { action: 'create', path: fx.adds[0]!, cid: leaf, prev: null }
  const after = applyOps(before.root, before.blocks, [create])
  const proof = subset(union(before.blocks, after.blocks), fx.blocksInProof.map(cid))
  const other = valueCid(7)

  it('control: the fixture op inverts', () => {
    expect(cidStr(invertOps(after.root, proof, [create]))).toBe(fx.rootBeforeCommit)
  })

  it('missing blocks → missing-block', () => {
    expect(mstErrorReason(() => invertOps(after.root, new BlockMap(), [create]))).toBe('missing-block')
    expect(mstErrorReason(() => mstLookup(after.root, new BlockMap(), create.path))).toBe('missing-block')
    // every single block of the proof is needed by this inversion
    for (const c of fx.blocksInProof) {
      const fewer = subset(proof, fx.blocksInProof.filter((x) => x !== c).map(cid))
      expect(mstErrorReason(() => invertOps(after.root, fewer, [create])), c).toBe('missing-block')
    }
  })

  it('value mismatches → bad-op', () => {
    expect(mstErrorReason(() => invertOps(after.root, proof, [{ ...create, cid: other }]))).toBe('bad-op')
    // update whose tree value is not op.cid
    expect(
      mstErrorReason(() => invertOps(after.root, proof, [{ action: 'update', path: create.path, cid: other, prev: leaf }])),
    ).toBe('bad-op')
    // delete of a path that is still in the tree
    expect(
      mstErrorReason(() => invertOps(after.root, proof, [{ action: 'delete', path: create.path, cid: null, prev: leaf }])),
    ).toBe('bad-op')
    // create of a path that is not in the tree (its neighbour search stays inside the proof)
    const absent: MstOp = { action: 'create', path: fx.adds[0]!.replace(/9196$/, '9197'), cid: leaf, prev: null }
    expect(mstErrorReason(() => invertOps(after.root, union(before.blocks, after.blocks), [absent]))).toBe('bad-op')
  })

  it('malformed or duplicate ops → bad-op', () => {
    expect(mstErrorReason(() => invertOps(after.root, proof, [create, { ...create }]))).toBe('bad-op')
    expect(mstErrorReason(() => invertOps(after.root, proof, [{ ...create, prev: leaf }]))).toBe('bad-op')
    expect(mstErrorReason(() => invertOps(after.root, proof, [{ ...create, cid: null }]))).toBe('bad-op')
    expect(mstErrorReason(() => invertOps(after.root, proof, [{ action: 'update', path: create.path, cid: leaf, prev: null }]))).toBe('bad-op')
    expect(mstErrorReason(() => invertOps(after.root, proof, [{ action: 'delete', path: 'x/y', cid: leaf, prev: leaf }]))).toBe('bad-op')
    expect(mstErrorReason(() => invertOps(after.root, proof, [{ ...create, path: '' }]))).toBe('bad-op')
  })

  it('a node at the wrong layer → bad-mst', () => {
    // A layer-2 root (key D2/…) whose child must be at layer 1 …
    const blocks = new BlockMap()
    // … but holds a layer-0 key
    const childBytes = encodeNode([new TextEncoder().encode('E0/670489')], [leaf], [null, null])
    const childCid = cidForCbor(childBytes)
    blocks.set(childCid, childBytes)
    const rootBytes2 = encodeNode([new TextEncoder().encode('D2/269196')], [leaf], [null, childCid])
    const rootCid2 = cidForCbor(rootBytes2)
    blocks.set(rootCid2, rootBytes2)
    expect(mstErrorReason(() => mstLookup(rootCid2, blocks, 'E0/670489'))).toBe('bad-mst')
    // a root with no entries but a subtree is an untrimmed top, which the reference PDS leaves:
    // it sits one layer above its child (test/atproto/mst-untrimmed.test.ts)
    const untrimmed = encodeNode([], [], [childCid])
    const untrimmedCid = cidForCbor(untrimmed)
    blocks.set(untrimmedCid, untrimmed)
    expect(mstLookup(untrimmedCid, blocks, 'E0/670489')).toEqual(leaf)
    // but the layer-2 root's wrong-layer child stays wrong under one
    const overRoot = encodeNode([], [], [rootCid2])
    const overRootCid = cidForCbor(overRoot)
    blocks.set(overRootCid, overRoot)
    expect(mstErrorReason(() => mstLookup(overRootCid, blocks, 'E0/670489'))).toBe('bad-mst')
    // a leaf-layer root with a child link
    const leafWithKid = encodeNode([new TextEncoder().encode('A0/374913')], [leaf], [null, childCid])
    const leafWithKidCid = cidForCbor(leafWithKid)
    blocks.set(leafWithKidCid, leafWithKid)
    expect(mstErrorReason(() => mstLookup(leafWithKidCid, blocks, 'B0/601692'))).toBe('bad-mst')
  })

  it('coveringProof alone is enough to invert and look up', () => {
    const proofOnly = coveringProof(after.root, union(before.blocks, after.blocks), [create.path])
    expect(cidStr(invertOps(after.root, proofOnly, [create]))).toBe(fx.rootBeforeCommit)
    expect(mstLookup(after.root, proofOnly, create.path)).toEqual(leaf)
  })

  it('returned CIDs are owned copies', () => {
    const found = mstLookup(after.root, proof, create.path)!
    const block = [...proof.entries()].find(([, b]) => Buffer.from(b).includes(Buffer.from(leaf)))![1]
    expect(found.buffer).not.toBe(block.buffer)
    const rootOut = invertOps(before.root, before.blocks, [])
    expect(cidStr(rootOut)).toBe(fx.rootBeforeCommit)
    expect(rootOut.buffer).not.toBe(before.root.buffer)
  })
})
