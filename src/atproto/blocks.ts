/**
 * A map of binary CID → block bytes. Keys are the CID bytes as a latin1 string
 * (cheap to build, exact), so callers never need string CIDs on the hot path.
 */
export interface ReadonlyBlockMap {
  get(cid: Uint8Array): Uint8Array | undefined
  has(cid: Uint8Array): boolean
  readonly size: number
  entries(): IterableIterator<[cid: Uint8Array, bytes: Uint8Array]>
}

function keyOf(cid: Uint8Array): string {
  return Buffer.from(cid.buffer, cid.byteOffset, cid.byteLength).toString('latin1')
}

export class BlockMap implements ReadonlyBlockMap {
  private readonly map = new Map<string, { cid: Uint8Array; bytes: Uint8Array }>()

  get(cid: Uint8Array): Uint8Array | undefined {
    return this.map.get(keyOf(cid))?.bytes
  }

  has(cid: Uint8Array): boolean {
    return this.map.has(keyOf(cid))
  }

  set(cid: Uint8Array, bytes: Uint8Array): void {
    this.map.set(keyOf(cid), { cid, bytes })
  }

  delete(cid: Uint8Array): boolean {
    return this.map.delete(keyOf(cid))
  }

  get size(): number {
    return this.map.size
  }

  *entries(): IterableIterator<[Uint8Array, Uint8Array]> {
    for (const { cid, bytes } of this.map.values()) yield [cid, bytes]
  }
}
