/**
 * The binary array parameters (src/storage/binary-array.ts) as the two databases read them:
 * every element, NULLs, empty arrays, the int8 range the relay uses and negative values.
 */
import { sql } from 'kysely'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { byteaArray, int2Array, int8Array, textArray } from '../../src/storage/binary-array.js'
import { createTestDatabase, STORAGE_KINDS, type TestDatabase } from '../helpers/db.js'

describe.each(STORAGE_KINDS)('binary array parameters (%s)', (kind) => {
  let t: TestDatabase
  beforeAll(async () => {
    t = await createTestDatabase(kind, { migrate: false })
  }, 120_000)
  afterAll(async () => t?.cleanup())

  async function column(param: Buffer, type: string): Promise<unknown[]> {
    const r = await sql<{ v: unknown }>`select unnest(${param}::${sql.raw(type)}) as v`.execute(t.storage.db)
    return r.rows.map((row) => row.v)
  }

  it('int8: safe integers both signs, read back as the same numbers', async () => {
    const values = [0, 1, -1, 2 ** 32 - 1, 2 ** 32, -(2 ** 32), 1_700_000_000_000_123, Number.MAX_SAFE_INTEGER, Number.MIN_SAFE_INTEGER]
    const back = await column(int8Array(values), 'int8[]')
    expect(back.map(Number)).toEqual(values)
    expect(() => int8Array([1.5])).toThrow(RangeError)
  })

  it('int2 and text, including multi-byte text and the empty string', async () => {
    expect((await column(int2Array([1, 4, -32768, 32767]), 'int2[]')).map(Number)).toEqual([1, 4, -32768, 32767])
    expect(() => int2Array([40_000])).toThrow(RangeError)
    expect(await column(textArray(['3kaaaaaaaaa22', 'é∑🦋', '']), 'text[]')).toEqual(['3kaaaaaaaaa22', 'é∑🦋', ''])
  })

  it('bytea with NULL elements, byte for byte', async () => {
    const big = new Uint8Array(70_000).map((_, i) => i & 255)
    const back = (await column(byteaArray([new Uint8Array([1, 2, 3]), null, new Uint8Array(0), big]), 'bytea[]')) as (Uint8Array | null)[]
    expect(back).toHaveLength(4)
    expect(Buffer.from(back[0]!)).toEqual(Buffer.from([1, 2, 3]))
    expect(back[1]).toBeNull()
    expect(back[2]!.length).toBe(0)
    expect(Buffer.compare(Buffer.from(back[3]!), Buffer.from(big))).toBe(0)
  })

  it('empty arrays unnest to no rows', async () => {
    expect(await column(int8Array([]), 'int8[]')).toEqual([])
    expect(await column(byteaArray([]), 'bytea[]')).toEqual([])
    expect(await column(textArray([]), 'text[]')).toEqual([])
  })
})
