import { readFileSync } from 'node:fs'
import { describe, expect, it } from 'vitest'
import {
  isValidCidString,
  isValidDatetime,
  isValidDid,
  isValidHandle,
  isValidNsid,
  isValidRecordKey,
  isValidRepoPath,
  isValidTid,
} from '../../src/atproto/syntax.js'

/** Fixture lines: `#` lines are comments, blank lines skipped; values keep their whitespace. */
function lines(name: string): string[] {
  return readFileSync(new URL(`../fixtures/interop/syntax/${name}`, import.meta.url), 'utf8')
    .split('\n')
    .filter((line) => line.length > 0 && !line.startsWith('#'))
}

const checks: [string, (value: string) => boolean][] = [
  ['did', isValidDid],
  ['handle', isValidHandle],
  ['nsid', isValidNsid],
  ['recordkey', isValidRecordKey],
  ['tid', isValidTid],
  ['datetime', isValidDatetime],
  ['cid', isValidCidString],
]

describe('interop syntax fixtures', () => {
  for (const [name, check] of checks) {
    it(`${name}: every valid line passes`, () => {
      const values = lines(`${name}_syntax_valid.txt`)
      expect(values.length).toBeGreaterThan(3)
      expect(values.filter((v) => !check(v))).toEqual([])
    })
    it(`${name}: every invalid line fails`, () => {
      const values = lines(`${name}_syntax_invalid.txt`)
      expect(values.length).toBeGreaterThan(3)
      expect(values.filter((v) => check(v))).toEqual([])
    })
  }

  it('datetime: values that look right but do not parse fail', () => {
    const values = lines('datetime_parse_invalid.txt')
    expect(values.length).toBe(7)
    expect(values.filter((v) => isValidDatetime(v))).toEqual([])
  })

  it('datetime: calendar edge cases', () => {
    expect(isValidDatetime('2024-02-29T00:00:00Z')).toBe(true)
    expect(isValidDatetime('2023-02-29T00:00:00Z')).toBe(false)
    expect(isValidDatetime('2023-04-31T00:00:00Z')).toBe(false)
    expect(isValidDatetime('2023-04-30T00:00:00+23:59')).toBe(true)
    expect(isValidDatetime('2023-04-30T00:00:00+24:00')).toBe(false)
    expect(isValidDatetime('0000-01-01T00:00:00-01:00')).toBe(true)
    expect(isValidDatetime('0000-01-01T00:59:00+01:00')).toBe(false)
    expect(isValidDatetime('0000-01-01T01:00:00+01:00')).toBe(true)
  })
})

describe('repo paths', () => {
  it('accepts collection/rkey and rejects everything else', () => {
    expect(isValidRepoPath('app.bsky.feed.post/3jzfcijpj2z2a')).toBe(true)
    expect(isValidRepoPath('app.bsky.actor.profile/self')).toBe(true)
    expect(isValidRepoPath('com.example.record/a:b~c')).toBe(true)
    for (const bad of [
      '',
      '/',
      'app.bsky.feed.post',
      'app.bsky.feed.post/',
      '/3jzfcijpj2z2a',
      'app.bsky.feed.post/a/b',
      'app.bsky.feed.post/..',
      'app.bsky.feed.post/.',
      'notansid/abc',
      'app.bsky.feed.post/a b',
      `app.bsky.feed.post/${'a'.repeat(513)}`,
    ]) {
      expect(isValidRepoPath(bad), bad).toBe(false)
    }
  })
})
