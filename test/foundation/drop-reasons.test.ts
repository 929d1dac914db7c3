/** The reason tables in docs/operations.md match the closed lists in the code, both ways, meanings included. */
import { readFileSync } from 'node:fs'
import { describe, expect, it } from 'vitest'
import { DROP_REASON_MEANINGS, DROP_REASONS, isDropReason } from '../../src/atproto/drop-reasons.js'
import { CUT_OFF_REASON_MEANINGS } from '../../src/firehose/cut-off-reasons.js'

const doc = readFileSync(new URL('../../docs/operations.md', import.meta.url), 'utf8')

/** `| \`reason\` | meaning |` rows of the table under `### heading`. */
function table(heading: string): Record<string, string> {
  const start = doc.indexOf(`\n### ${heading}\n`)
  expect(start, `section ${heading}`).toBeGreaterThan(0)
  const rest = doc.slice(start + heading.length + 6)
  const end = rest.search(/\n#{2,3} /)
  const rows: Record<string, string> = {}
  for (const line of (end < 0 ? rest : rest.slice(0, end)).split('\n')) {
    const m = /^\| `([^`]+)` \| (.+) \|$/.exec(line)
    if (m) rows[m[1] as string] = m[2] as string
  }
  return rows
}

describe('reason lists', () => {
  it('the drop-reason table is the list in src/atproto/drop-reasons.ts', () => {
    expect(table('Drop reasons')).toEqual({ ...DROP_REASON_MEANINGS })
  })

  it('the cut-off table is the list in src/firehose/cut-off-reasons.ts', () => {
    expect(table('Consumer cut-off reasons')).toEqual({ ...CUT_OFF_REASON_MEANINGS })
  })

  it('every reason is kebab-case with a one-line meaning', () => {
    for (const [reason, meaning] of [...Object.entries(DROP_REASON_MEANINGS), ...Object.entries(CUT_OFF_REASON_MEANINGS)]) {
      expect(reason).toMatch(/^[a-z]+(-[a-z]+)*$/)
      expect(meaning.length).toBeGreaterThan(10)
      expect(meaning).not.toContain('\n')
    }
    expect(DROP_REASONS.every(isDropReason)).toBe(true)
    expect(isDropReason('too_slow')).toBe(false)
  })
})
