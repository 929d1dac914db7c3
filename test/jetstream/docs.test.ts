/** The Jetstream cut-off table in docs/operations.md is the closed list in src/jetstream/cut-off-reasons.ts, both ways. */
import { readFileSync } from 'node:fs'
import { describe, expect, it } from 'vitest'
import { JETSTREAM_CUT_OFF_REASON_MEANINGS } from '../../src/jetstream/cut-off-reasons.js'

const doc = readFileSync(new URL('../../docs/operations.md', import.meta.url), 'utf8')

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

describe('Jetstream cut-off reasons', () => {
  it('the table is the list, meanings included; reasons are kebab-case', () => {
    expect(table('Jetstream cut-off reasons')).toEqual({ ...JETSTREAM_CUT_OFF_REASON_MEANINGS })
    for (const [reason, meaning] of Object.entries(JETSTREAM_CUT_OFF_REASON_MEANINGS)) {
      expect(reason).toMatch(/^[a-z]+(-[a-z]+)*$/)
      expect(meaning.length).toBeGreaterThan(10)
    }
  })
})
