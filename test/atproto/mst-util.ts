/** Shared helpers for the MST tests. */
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import * as CID from '@atcute/cid'
import { cidForCbor } from '../../src/atproto/cid.js'
import { BlockMap, type ReadonlyBlockMap } from '../../src/atproto/blocks.js'
import { MstError, type MstErrorReason } from '../../src/atproto/mst/index.js'

export function fixturePath(rel: string): string {
  return fileURLToPath(new URL(`../fixtures/${rel}`, import.meta.url))
}

export function readFixture(rel: string): string {
  return readFileSync(fixturePath(rel), 'utf8')
}

/** 36-byte binary CID of a `bafy…` string. */
export function cid(text: string): Uint8Array {
  return new Uint8Array(CID.fromString(text).bytes)
}

export function cidStr(bytes: Uint8Array): string {
  return CID.toString(CID.decode(bytes))
}

/** A distinct, valid record CID per number. */
export function valueCid(n: number): Uint8Array {
  return cidForCbor(new TextEncoder().encode(`value-${n}`))
}

/** Only the listed blocks, copied out of `from`. */
export function subset(from: ReadonlyBlockMap, cids: Iterable<Uint8Array>): BlockMap {
  const out = new BlockMap()
  for (const c of cids) {
    const bytes = from.get(c)
    if (bytes === undefined) throw new Error(`block ${cidStr(c)} not available`)
    out.set(c, bytes)
  }
  return out
}

export function union(...maps: ReadonlyBlockMap[]): BlockMap {
  const out = new BlockMap()
  for (const m of maps) for (const [c, b] of m.entries()) out.set(c, b)
  return out
}

/** Run `fn` and return the MstError reason it throws (fails the test otherwise). */
export function mstErrorReason(fn: () => unknown): MstErrorReason {
  try {
    fn()
  } catch (err) {
    if (err instanceof MstError) return err.reason
    throw err
  }
  throw new Error('expected an MstError, but nothing was thrown')
}

export const exampleKeys: string[] = readFixture('interop/mst/example_keys.txt')
  .split('\n')
  .map((l) => l.trim())
  .filter((l) => l.length > 0)
