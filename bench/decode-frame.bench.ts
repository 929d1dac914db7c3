/**
 * Cost of decodeFrame per frame on typical ~4.5 KB #commit frames (a post
 * with facets and an embed into a repo of 2,600 records, as in
 * verify.bench.ts), with the unbounded decode it replaced beside it, and
 * hostile 5 MB frames (refused by the bounded scan).
 *
 *   npx tsx bench/decode-frame.bench.ts      (RUNS=7 RUN_MS=300 to tune)
 */
import { decodeFirst, encode } from '@atcute/cbor'
import { scanItem } from '../src/atproto/cbor-scan.js'
import { decodeFrame, encodeMessageFrame, isPlainMap } from '../src/atproto/frame.js'
import { FRAME_BODY_LIMITS, FRAME_HEADER_LIMITS } from '../src/atproto/limits.js'
import { TestRepo, commitBody, createWrite } from '../test/atproto/support/events.js'
import { commitBombFrame, infoBombFrame, infoFlatFrame } from '../test/helpers/hostile-frames.js'

const RUNS = Number(process.env.RUNS ?? 7)
const RUN_MS = Number(process.env.RUN_MS ?? 300)

const RECORDS = 2_600
const POST_TEXT =
  'Spent the afternoon reading about Merkle search trees and how relays check each commit against the previous root. ' +
  'Surprisingly elegant: invert the ops, recompute the root, compare. Notes here: https://example.com/mst-notes #atproto'
const POST_EXTRA = {
  langs: ['en'],
  facets: [{ index: { byteStart: 185, byteEnd: 214 }, features: [{ $type: 'app.bsky.richtext.facet#link', uri: 'https://example.com/mst-notes' }] }],
  embed: {
    $type: 'app.bsky.embed.external',
    external: { uri: 'https://example.com/mst-notes', title: 'Notes on Merkle search trees', description: 'A long-form walk through how a relay can validate a commit. '.repeat(4) },
  },
}
const repo = await TestRepo.create({ curve: 'k256', records: RECORDS })
const commits: Uint8Array[] = []
for (let i = 0; i < 32; i++) {
  const write = createWrite('app.bsky.feed.post', RECORDS + i, POST_TEXT)
  Object.assign(write.record, POST_EXTRA)
  commits.push(encodeMessageFrame('#commit', commitBody(await repo.commit([write]), {}, 1000 + i)))
}

/** What decodeFrame did before the bounded scan (shape checks are the same cost either way). */
function unboundedDecode(bytes: Uint8Array): unknown {
  const [header, rest] = decodeFirst(bytes)
  const [body, remainder] = decodeFirst(rest)
  if (remainder.length !== 0 || !isPlainMap(header) || !isPlainMap(body) || header.op !== 1 || typeof header.t !== 'string') throw new Error('bad')
  return body
}

function nsPerCall(frames: Uint8Array[], fn: (f: Uint8Array) => unknown): number {
  const samples: number[] = []
  for (let run = -1; run < RUNS; run++) {
    let n = 0
    const start = process.hrtime.bigint()
    const end = start + BigInt(RUN_MS) * 1_000_000n
    let now = start
    while (now < end) {
      for (let i = 0; i < 64; i++) fn(frames[(n + i) % frames.length]!)
      n += 64
      now = process.hrtime.bigint()
    }
    if (run >= 0) samples.push(Number(now - start) / n)
  }
  return samples.sort((a, b) => a - b)[Math.floor(samples.length / 2)]!
}

function refuse(f: Uint8Array): unknown {
  try {
    return decodeFrame(f)
  } catch (err) {
    return err
  }
}

const avg = Math.round(commits.reduce((s, f) => s + f.length, 0) / commits.length)
console.log(`${commits.length} #commit frames, ${avg} bytes on average`)
for (let round = 0; round < 2; round++) {
  console.log(`  unbounded (before)    : ${nsPerCall(commits, unboundedDecode).toFixed(0)} ns/frame`)
  console.log(`  decodeFrame (bounded) : ${nsPerCall(commits, decodeFrame).toFixed(0)} ns/frame`)
  console.log(`  decodeFrame 'shallow' : ${nsPerCall(commits, (f) => decodeFrame(f, 'shallow')).toFixed(0)} ns/frame (what the crawler does: blocks and ops left for the verify worker)`)
  console.log(`  the scans alone       : ${nsPerCall(commits, (f) => scanItem(f, scanItem(f, 0, FRAME_HEADER_LIMITS), FRAME_BODY_LIMITS)).toFixed(0)} ns/frame`)
}

// Worst cases within the 5 MB frame limit: refused by the scan, or decoded within the item bound.
const widest = encode({ did: 'did:plc:x', many: Array.from({ length: 8_000 }, () => 'x'.repeat(600)) })
const hostile: [string, Uint8Array][] = [
  ['#info 4.9 M deep', infoBombFrame()],
  ['#commit 4.9 M deep', commitBombFrame(1)],
  ['#info 4.9 M items', infoFlatFrame()],
  [`#account 8,000 × 600-byte strings (${(widest.length / 1e6).toFixed(1)} MB, decoded)`, new Uint8Array(Buffer.concat([encode({ t: '#account', op: 1 }), widest]))],
]
for (const [what, frame] of hostile) {
  const ms = nsPerCall([frame], refuse) / 1e6
  const outcome = refuse(frame)
  console.log(`  ${what}: ${ms.toFixed(3)} ms → ${outcome instanceof Error ? (outcome as { reason?: string }).reason : 'decoded'}`)
}
