/**
 * A map of binary CID → block bytes, so callers never need string CIDs on the
 * hot path.
 *
 * Keys are a small integer taken from the CID's last bytes (the end of its
 * hash digest), with entries chained under it and compared in full on lookup.
 * That is several times cheaper than building a string key per call (MST walks
 * call `get` several times per event); the full compare keeps it exact even
 * for CIDs crafted to share a digest suffix.
 */
import { bytesEqual } from './cid.js'

export interface ReadonlyBlockMap {
  get(cid: Uint8Array): Uint8Array | undefined
  has(cid: Uint8Array): boolean
  readonly size: number
  entries(): IterableIterator<[cid: Uint8Array, bytes: Uint8Array]>
}

interface Entry {
  cid: Uint8Array
  bytes: Uint8Array
  /** The next entry whose CID has the same bucket key. */
  next: Entry | undefined
}

/** 30 bits (a small integer, V8's fastest Map key) from the last 4 bytes; short inputs use what there is. */
function bucketOf(cid: Uint8Array): number {
  const n = cid.length
  let h = 0
  for (let i = n < 4 ? 0 : n - 4; i < n; i++) h = (h << 8) | cid[i]!
  return h & 0x3fffffff
}

export class BlockMap implements ReadonlyBlockMap {
  private readonly buckets = new Map<number, Entry>()
  private count = 0

  private find(cid: Uint8Array): Entry | undefined {
    for (let e = this.buckets.get(bucketOf(cid)); e !== undefined; e = e.next) if (bytesEqual(e.cid, cid)) return e
    return undefined
  }

  get(cid: Uint8Array): Uint8Array | undefined {
    return this.find(cid)?.bytes
  }

  has(cid: Uint8Array): boolean {
    return this.find(cid) !== undefined
  }

  set(cid: Uint8Array, bytes: Uint8Array): void {
    const bucket = bucketOf(cid)
    const head = this.buckets.get(bucket)
    for (let e = head; e !== undefined; e = e.next) {
      if (bytesEqual(e.cid, cid)) {
        e.bytes = bytes
        return
      }
    }
    this.buckets.set(bucket, { cid, bytes, next: head })
    this.count++
  }

  delete(cid: Uint8Array): boolean {
    const bucket = bucketOf(cid)
    let prev: Entry | undefined
    for (let e = this.buckets.get(bucket); e !== undefined; prev = e, e = e.next) {
      if (!bytesEqual(e.cid, cid)) continue
      if (prev !== undefined) prev.next = e.next
      else if (e.next !== undefined) this.buckets.set(bucket, e.next)
      else this.buckets.delete(bucket)
      this.count--
      return true
    }
    return false
  }

  get size(): number {
    return this.count
  }

  *entries(): IterableIterator<[Uint8Array, Uint8Array]> {
    for (const head of this.buckets.values()) for (let e: Entry | undefined = head; e !== undefined; e = e.next) yield [e.cid, e.bytes]
  }
}
