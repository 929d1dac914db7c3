/**
 * TIDs (record keys and revs): 13 chars of base32-sortable over
 * (microseconds since epoch << 10 | clock id). Our own copy so revs can be
 * forced into the past or the future for hostile-frame tests.
 */
const S32 = '234567abcdefghijklmnopqrstuvwxyz'

let lastMicros = 0n

export function tidFromTime(micros: bigint, clockId = 0): string {
  let v = (micros << 10n) | BigInt(clockId & 0x3ff)
  let out = ''
  for (let i = 0; i < 13; i++) {
    out = S32[Number(v & 31n)] + out
    v >>= 5n
  }
  return out
}

export function tidToMicros(tid: string): bigint {
  let v = 0n
  for (const ch of tid) v = (v << 5n) | BigInt(S32.indexOf(ch))
  return v >> 10n
}

/** A fresh TID from the clock, strictly greater than every earlier one here and than `after`. */
export function nextTid(after?: string | null): string {
  let micros = BigInt(Date.now()) * 1000n
  if (micros <= lastMicros) micros = lastMicros + 1n
  if (after) {
    const floor = tidToMicros(after)
    if (micros <= floor) micros = floor + 1n
  }
  lastMicros = micros
  return tidFromTime(micros)
}

/** A TID `ms` milliseconds from now (negative for the past). */
export function tidAtOffset(ms: number): string {
  return tidFromTime(BigInt(Date.now() + ms) * 1000n)
}
