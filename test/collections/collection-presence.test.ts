/**
 * The collection decision of a delete, from the new tree's proof blocks alone:
 * against brute force over many real trees (buildMst/applyOps, the relay's own
 * MST code), and through verifyCommitEvent on signed commits that
 * @atproto/repo builds (test/helpers/repo-builder.ts), as a PDS sends them.
 */
import { describe, expect, it } from 'vitest'
import { BlockMap } from '../../src/atproto/blocks.js'
import { parseDidKey } from '../../src/atproto/keys.js'
import { applyOps, buildMst, collectionChanges, keyBytes, prefixRemainsAround, type MstOp } from '../../src/atproto/mst/index.js'
import { verifyCommitEvent, type CommitFacts } from '../../src/atproto/verify.js'
import { decodeFrame, encodeEventFrame } from '../helpers/frames.js'
import { Rng } from '../helpers/records.js'
import { TestAccount, type CommitEvent } from '../helpers/repo-builder.js'
import { valueCid } from '../atproto/mst-util.js'

const COLLECTIONS = ['app.bsky.feed.like', 'app.bsky.feed.post', 'app.bsky.feed.postgate', 'app.bsky.graph.follow', 'com.example.rare']

function rkey(rng: Rng): string {
  const alphabet = '234567abcdefghijklmnopqrstuvwxyz'
  let s = '3l'
  for (let i = 0; i < 11; i++) s += alphabet[rng.int(alphabet.length)]
  return s
}

describe('prefixRemainsAround against brute force', () => {
  it('decides every single-key delete correctly on trees of 1 to 300 keys, from the proof blocks only', () => {
    const rng = new Rng(17)
    let checked = 0
    let emptied = 0
    for (let round = 0; round < 40; round++) {
      const size = 1 + rng.int(300)
      const paths = new Set<string>()
      while (paths.size < size) {
        // A skewed mix: most keys in a few collections, some collections with one or two records.
        const c = COLLECTIONS[Math.min(rng.int(6), rng.int(6), COLLECTIONS.length - 1)]!
        paths.add(`${c}/${rkey(rng)}`)
      }
      const all = [...paths].sort()
      const before = buildMst(all.map((p, i) => [p, valueCid(i)]))
      for (let n = 0; n < 8; n++) {
        const victim = all[rng.int(all.length)]!
        const collection = victim.slice(0, victim.indexOf('/'))
        const op: MstOp = { action: 'delete', path: victim, cid: null, prev: valueCid(all.indexOf(victim)) }
        const after = applyOps(before.root, before.blocks, [op])
        const expected = all.some((p) => p !== victim && p.startsWith(`${collection}/`))
        expect(prefixRemainsAround(after.root, after.proofBlocks, keyBytes(victim), keyBytes(`${collection}/`)), victim).toBe(expected)
        expect(collectionChanges(after.root, after.proofBlocks, [op])).toEqual({ gained: [], emptied: expected ? [] : [collection], undecided: [] })
        checked++
        if (!expected) emptied++
      }
    }
    expect(checked).toBe(320)
    // The generator must produce both outcomes for the comparison to mean anything.
    expect(emptied).toBeGreaterThan(10)
    expect(checked - emptied).toBeGreaterThan(10)
  })

  it('a collection that is a prefix of another (feed.post vs feed.postgate) is not kept alive by it', () => {
    const before = buildMst([
      ['app.bsky.feed.post/3laaaaaaaaaaa', valueCid(1)],
      ['app.bsky.feed.postgate/3laaaaaaaaaab', valueCid(2)],
      ['app.bsky.feed.like/3laaaaaaaaaac', valueCid(3)],
    ])
    const op: MstOp = { action: 'delete', path: 'app.bsky.feed.post/3laaaaaaaaaaa', cid: null, prev: valueCid(1) }
    const after = applyOps(before.root, before.blocks, [op])
    expect(collectionChanges(after.root, after.proofBlocks, [op]).emptied).toEqual(['app.bsky.feed.post'])
  })

  it('deleting the last record of the repo empties its collection (the empty tree)', () => {
    const before = buildMst([['com.example.rare/3laaaaaaaaaaa', valueCid(1)]])
    const op: MstOp = { action: 'delete', path: 'com.example.rare/3laaaaaaaaaaa', cid: null, prev: valueCid(1) }
    const after = applyOps(before.root, before.blocks, [op])
    expect(collectionChanges(after.root, after.proofBlocks, [op]).emptied).toEqual(['com.example.rare'])
  })

  it('says undecided (null), never "emptied", when a node on the path is missing', () => {
    const rng = new Rng(5)
    const all: string[] = []
    for (let i = 0; i < 400; i++) all.push(`app.bsky.feed.like/${rkey(rng)}`)
    all.push('com.example.rare/3laaaaaaaaaaa')
    all.sort()
    const before = buildMst(all.map((p, i) => [p, valueCid(i)]))
    const victim = 'com.example.rare/3laaaaaaaaaaa'
    const op: MstOp = { action: 'delete', path: victim, cid: null, prev: valueCid(all.indexOf(victim)) }
    const after = applyOps(before.root, before.blocks, [op])
    // Only the root: a 400-key tree has more than one layer, so the path leaves the slice.
    const rootOnly = new BlockMap()
    rootOnly.set(after.root, after.proofBlocks.get(after.root)!)
    expect(prefixRemainsAround(after.root, rootOnly, keyBytes(victim), keyBytes('com.example.rare/'))).toBe(null)
    expect(collectionChanges(after.root, rootOnly, [op])).toEqual({ gained: [], emptied: [], undecided: ['com.example.rare'] })
    // With the proof it is decided.
    expect(collectionChanges(after.root, after.proofBlocks, [op]).emptied).toEqual(['com.example.rare'])
  })

  it('one commit: creates are gained, a create and a delete in one collection keep it, two deletes of its last records empty it', () => {
    const before = buildMst([
      ['a.b.c/3laaaaaaaaaaa', valueCid(1)],
      ['a.b.c/3laaaaaaaaaab', valueCid(2)],
      ['a.b.d/3laaaaaaaaaac', valueCid(3)],
      ['a.b.e/3laaaaaaaaaad', valueCid(4)],
    ])
    const ops: MstOp[] = [
      { action: 'delete', path: 'a.b.c/3laaaaaaaaaaa', cid: null, prev: valueCid(1) },
      { action: 'delete', path: 'a.b.c/3laaaaaaaaaab', cid: null, prev: valueCid(2) },
      { action: 'delete', path: 'a.b.d/3laaaaaaaaaac', cid: null, prev: valueCid(3) },
      { action: 'create', path: 'a.b.d/3laaaaaaaaaax', cid: valueCid(5), prev: null },
      { action: 'create', path: 'a.b.f/3laaaaaaaaaay', cid: valueCid(6), prev: null },
    ]
    const after = applyOps(before.root, before.blocks, ops)
    const changes = collectionChanges(after.root, after.proofBlocks, ops)
    expect(changes.gained.sort()).toEqual(['a.b.d', 'a.b.f'])
    expect(changes.emptied).toEqual(['a.b.c'])
    expect(changes.undecided).toEqual([])
  })
})

describe('through verifyCommitEvent on signed commits (@atproto/repo)', () => {
  const wire = (e: CommitEvent) => decodeFrame(encodeEventFrame(e, 1)).body
  const verify = (account: TestAccount, e: CommitEvent, strict = true): CommitFacts => {
    const r = verifyCommitEvent(wire(e), parseDidKey(account.signingKey.did()), { strict, hasStoredHead: true })
    if (!r.ok) throw new Error(`${r.reason}: ${r.message}`)
    return r.facts
  }

  it('creates gain, the last delete of a collection empties it, another record keeps it', async () => {
    const account = await TestAccount.create()
    await account.genesis()
    const rng = new Rng(3)
    // Enough records for a tree of several layers.
    for (let i = 0; i < 60; i++) await account.createRecord('app.bsky.feed.like', { $type: 'app.bsky.feed.like', n: i }, rkey(rng))
    const firstThing = await account.createRecord('com.example.thing', { $type: 'com.example.thing', n: 1 })
    expect(verify(account, firstThing).collections).toEqual({ gained: ['com.example.thing'], emptied: [], undecided: [] })
    const secondThing = await account.createRecord('com.example.thing', { $type: 'com.example.thing', n: 2 })
    const [first, second] = [firstThing.meta.ops[0]!.path, secondThing.meta.ops[0]!.path]

    const keepOne = await account.deleteRecord(first)
    expect(verify(account, keepOne).collections).toEqual({ gained: [], emptied: [], undecided: [] })
    const lastOne = await account.deleteRecord(second)
    expect(verify(account, lastOne).collections).toEqual({ gained: [], emptied: ['com.example.thing'], undecided: [] })

    // Likes: deleting one of many keeps the collection.
    const like = account.recordPaths.find((p) => p.startsWith('app.bsky.feed.like/'))!
    expect(verify(account, await account.deleteRecord(like)).collections.emptied).toEqual([])
  })

  it('a lenient relay given a slice without proofs never reports a wrong "emptied"', async () => {
    const account = await TestAccount.create()
    await account.genesis()
    const rng = new Rng(9)
    for (let i = 0; i < 80; i++) await account.createRecord(i % 2 ? 'app.bsky.feed.like' : 'app.bsky.feed.post', { n: i }, rkey(rng))
    for (const path of [...account.recordPaths].slice(0, 10)) {
      const e = await account.commit({ action: 'delete', path }, { omitProofBlocks: true })
      const c = verify(account, e, false).collections
      // Both collections keep dozens of records: the answer is "kept" or "unknown", never "emptied".
      expect(c.emptied).toEqual([])
    }
  })
})
