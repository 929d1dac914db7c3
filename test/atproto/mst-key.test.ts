import { hash, randomBytes } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import { commonPrefixLength, compareKeys, keyHeight } from '../../src/atproto/mst/index.js'
import { sha256SmallWords, SMALL_SHA256_MAX } from '../../src/atproto/mst/sha256-small.js'
import { exampleKeys, readFixture } from './mst-util.js'

const utf8 = new TextEncoder()

describe('MST key height', () => {
  const vectors = JSON.parse(readFixture('interop/mst/key_heights.json')) as { key: string; height: number }[]

  it('matches interop key_heights.json', () => {
    expect(vectors.length).toBeGreaterThan(5)
    for (const { key, height } of vectors) {
      expect(keyHeight(key), key).toBe(height)
      expect(keyHeight(utf8.encode(key)), key).toBe(height)
    }
  })

  it('matches the heights encoded in example_keys.txt names', () => {
    expect(exampleKeys.length).toBe(156)
    const seen = new Set<number>()
    for (const key of exampleKeys) {
      const expected = Number(key[1])
      seen.add(expected)
      expect(keyHeight(key), key).toBe(expected)
    }
    expect([...seen].sort()).toEqual([0, 1, 2, 3, 4, 5])
  })

  it('handles keys longer than the small-hash path', () => {
    for (const len of [SMALL_SHA256_MAX, SMALL_SHA256_MAX + 1, 1024, 5000]) {
      const key = randomBytes(len)
      const digest = hash('sha256', key, 'buffer')
      let zeros = 0
      for (const byte of digest) {
        if (byte === 0) {
          zeros += 8
          continue
        }
        zeros += Math.clz32(byte) - 24
        break
      }
      expect(keyHeight(key)).toBe(zeros >> 1)
    }
  })
})

describe('small sha256', () => {
  it('agrees with node:crypto for every length it accepts', () => {
    for (let len = 0; len <= SMALL_SHA256_MAX; len++) {
      for (let rep = 0; rep < 3; rep++) {
        const data = randomBytes(len)
        const words = sha256SmallWords(data)
        const out = Buffer.alloc(32)
        for (let i = 0; i < 8; i++) out.writeInt32BE(words[i]!, i * 4)
        expect(out.toString('hex'), `length ${len}`).toBe(hash('sha256', data, 'hex'))
      }
    }
  })

  it('hashes a window of a larger buffer', () => {
    const data = randomBytes(400)
    for (const [start, length] of [[0, 0], [7, 30], [100, 64], [200, SMALL_SHA256_MAX]] as const) {
      const words = sha256SmallWords(data, start, length)
      const out = Buffer.alloc(32)
      for (let i = 0; i < 8; i++) out.writeInt32BE(words[i]!, i * 4)
      expect(out.toString('hex')).toBe(hash('sha256', data.subarray(start, start + length), 'hex'))
    }
  })

  it('refuses inputs longer than its scratch space', () => {
    expect(() => sha256SmallWords(new Uint8Array(SMALL_SHA256_MAX + 1))).toThrow(RangeError)
  })
})

describe('commonPrefixLength', () => {
  const vectors = JSON.parse(readFixture('interop/mst/common_prefix.json')) as {
    left: string
    right: string
    len: number
  }[]

  it('matches interop common_prefix.json', () => {
    expect(vectors.length).toBeGreaterThan(5)
    for (const { left, right, len } of vectors) {
      expect(commonPrefixLength(utf8.encode(left), utf8.encode(right)), `${left} | ${right}`).toBe(len)
    }
  })
})

describe('compareKeys', () => {
  it('orders bytewise, shorter prefix first', () => {
    const keys = ['b', 'a', 'ab', '', 'a\u0000', 'B', 'é'].map((k) => utf8.encode(k))
    const sorted = [...keys].sort(compareKeys).map((k) => Buffer.from(k).toString('hex'))
    const expected = [...keys].sort(Buffer.compare).map((k) => Buffer.from(k).toString('hex'))
    expect(sorted).toEqual(expected)
  })
})
