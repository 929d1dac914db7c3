import { describe, expect, it } from 'vitest'
import { TidError } from '../../src/atproto/errors.js'
import { isValidTid } from '../../src/atproto/syntax.js'
import { compareTids, isRevTooFarInFuture, makeTid, parseTid, tidToMicros } from '../../src/atproto/tid.js'

describe('TID', () => {
  it('parses the documented example', () => {
    // 3lhhxizu5wr2d → 2025-02-06T01:43:21.749399Z, clock id 9 (PROTOCOL.md §3.5)
    const { micros, clockId } = parseTid('3lhhxizu5wr2d')
    expect(new Date(Math.floor(micros / 1000)).toISOString()).toBe('2025-02-06T01:43:21.749Z')
    expect(micros % 1000).toBe(399)
    expect(clockId).toBe(9)
  })

  it('zero and round trips', () => {
    expect(parseTid('2222222222222')).toEqual({ micros: 0, clockId: 0 })
    for (const micros of [0, 1, 31, 32, 1_700_000_000_000_000, Date.now() * 1000 + 123]) {
      for (const clockId of [0, 1, 31, 32, 1023]) {
        const tid = makeTid(micros, clockId)
        expect(isValidTid(tid)).toBe(true)
        expect(parseTid(tid)).toEqual({ micros, clockId })
      }
    }
    expect(makeTid(1_738_806_201_749_399, 9)).toBe('3lhhxizu5wr2d')
  })

  it('string order is time order', () => {
    const a = makeTid(1_700_000_000_000_000, 5)
    const b = makeTid(1_700_000_000_000_001, 0)
    expect(compareTids(a, b)).toBe(-1)
    expect(compareTids(b, a)).toBe(1)
    expect(compareTids(a, a)).toBe(0)
    expect(tidToMicros(a) < tidToMicros(b)).toBe(true)
  })

  it('rejects invalid TIDs with TidError', () => {
    for (const bad of ['', '3jzfcijpj2z21', 'kjzfcijpj2z2a', '3JZFCIJPJ2Z2A', '3jzfcijpj2z2aa']) {
      expect(() => parseTid(bad)).toThrow(TidError)
    }
    expect(() => makeTid(-1)).toThrow(TidError)
    expect(() => makeTid(0, 1024)).toThrow(TidError)
  })

  it('detects revs too far in the future', () => {
    const now = 1_750_000_000_000
    expect(isRevTooFarInFuture(makeTid(now * 1000), now)).toBe(false)
    expect(isRevTooFarInFuture(makeTid((now + 299_000) * 1000), now)).toBe(false)
    expect(isRevTooFarInFuture(makeTid((now + 301_000) * 1000), now)).toBe(true)
    expect(isRevTooFarInFuture(makeTid((now + 10 * 60_000) * 1000), now)).toBe(true)
    expect(isRevTooFarInFuture(makeTid((now + 10 * 60_000) * 1000), now, 15 * 60_000)).toBe(false)
    expect(isRevTooFarInFuture(makeTid((now - 86_400_000) * 1000), now)).toBe(false)
  })
})
