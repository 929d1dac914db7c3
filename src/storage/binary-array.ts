/**
 * One-dimensional arrays in Postgres's binary array format (what `array_recv`
 * reads), built into one Buffer so a whole column of a batch travels as one
 * binary parameter (`$1::int8[]`, `unnest(…)`). `pg` and PGlite send a Buffer
 * parameter in binary format as it is.
 *
 * Why: a batch written as `values ($1, $2, …)` binds six parameters per event.
 * `pg` serialises each one separately (numbers as text) and Postgres parses and
 * plans a statement of thousands of parameters for every batch; with one array
 * per column the statement text is fixed and each column is a single copy
 * (`bench/batch-statement.bench.ts` measures both).
 *
 * Layout: int32 ndim (1, or 0 when empty), int32 has-nulls flag, int32 element
 * type OID, then per dimension int32 length and int32 lower bound (1), then per
 * element int32 byte length (−1 for NULL) and the element's binary form. All
 * integers big-endian.
 */

/** Element type OIDs (pg_type). */
const OID = { int2: 21, int8: 20, text: 25, bytea: 17 } as const

const HEADER_BYTES = 20
const EMPTY_HEADER_BYTES = 12
const TWO_32 = 2 ** 32

function empty(oid: number): Buffer {
  const out = Buffer.alloc(EMPTY_HEADER_BYTES)
  out.writeInt32BE(oid, 8)
  return out
}

function header(out: Buffer, oid: number, count: number, hasNulls: boolean): number {
  out.writeInt32BE(1, 0)
  out.writeInt32BE(hasNulls ? 1 : 0, 4)
  out.writeInt32BE(oid, 8)
  out.writeInt32BE(count, 12)
  out.writeInt32BE(1, 16)
  return HEADER_BYTES
}

/** `int8[]` from safe integers (seqs, ids, µs times). */
export function int8Array(values: readonly number[]): Buffer {
  if (values.length === 0) return empty(OID.int8)
  const out = Buffer.allocUnsafe(HEADER_BYTES + values.length * 12)
  let pos = header(out, OID.int8, values.length, false)
  for (const v of values) {
    if (!Number.isSafeInteger(v)) throw new RangeError(`int8 array element ${v} is not a safe integer`)
    out.writeInt32BE(8, pos)
    // Two 32-bit halves: cheaper than a BigInt per value; floor keeps the high half right for negatives.
    const high = Math.floor(v / TWO_32)
    out.writeInt32BE(high, pos + 4)
    out.writeUInt32BE(v - high * TWO_32, pos + 8)
    pos += 12
  }
  return out
}

/** `int2[]`. */
export function int2Array(values: readonly number[]): Buffer {
  if (values.length === 0) return empty(OID.int2)
  const out = Buffer.allocUnsafe(HEADER_BYTES + values.length * 6)
  let pos = header(out, OID.int2, values.length, false)
  for (const v of values) {
    if (!Number.isInteger(v) || v < -32768 || v > 32767) throw new RangeError(`int2 array element ${v} is out of range`)
    out.writeInt32BE(2, pos)
    out.writeInt16BE(v, pos + 4)
    pos += 6
  }
  return out
}

/** `bytea[]`; null elements are SQL NULL. Each element is copied once, into the array. */
export function byteaArray(values: readonly (Uint8Array | null)[]): Buffer {
  if (values.length === 0) return empty(OID.bytea)
  let size = HEADER_BYTES
  let hasNulls = false
  for (const v of values) {
    size += 4
    if (v === null) hasNulls = true
    else size += v.length
  }
  const out = Buffer.allocUnsafe(size)
  let pos = header(out, OID.bytea, values.length, hasNulls)
  for (const v of values) {
    if (v === null) {
      out.writeInt32BE(-1, pos)
      pos += 4
      continue
    }
    out.writeInt32BE(v.length, pos)
    out.set(v, pos + 4)
    pos += 4 + v.length
  }
  return out
}

/** `text[]` (UTF-8); null elements are SQL NULL. */
export function textArray(values: readonly (string | null)[]): Buffer {
  return byteaArrayOf(OID.text, values.map((s) => (s === null ? null : Buffer.from(s, 'utf8'))))
}

function byteaArrayOf(oid: number, values: readonly (Uint8Array | null)[]): Buffer {
  const out = byteaArray(values)
  out.writeInt32BE(oid, 8)
  return out
}
