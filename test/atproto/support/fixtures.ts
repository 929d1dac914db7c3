/** Loading JSON fixtures with `$link` / `$bytes` into @atcute/cbor values. */
import { readFileSync } from 'node:fs'
import { CidLinkWrapper, toBytes } from '@atcute/cbor'
import { cidFromString } from '../../../src/atproto/cid.js'

export function readFixture(path: string): string {
  return readFileSync(new URL(`../../fixtures/${path}`, import.meta.url), 'utf8')
}

/** JSON data model → CBOR data model values. */
export function fromJsonModel(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(fromJsonModel)
  if (value !== null && typeof value === 'object') {
    const obj = value as Record<string, unknown>
    const keys = Object.keys(obj)
    if (keys.length === 1 && typeof obj.$link === 'string') return new CidLinkWrapper(cidFromString(obj.$link))
    if (keys.length === 1 && typeof obj.$bytes === 'string') return toBytes(new Uint8Array(Buffer.from(obj.$bytes, 'base64')))
    const out: Record<string, unknown> = {}
    for (const k of keys) out[k] = fromJsonModel(obj[k])
    return out
  }
  return value
}

export const INDIGO_COMMITS = ['4621317030', '4621317332', '4621332152', '4623075231'].map(
  (seq) => `indigo/repo/firehose_commit_${seq}.json`,
)

export function indigoCommitBody(path: string): Record<string, unknown> {
  return fromJsonModel(JSON.parse(readFixture(path))) as Record<string, unknown>
}

export interface ScenarioFrame {
  t: string
  seq: number
  b64: string
}

export function scenarioFrames(): ScenarioFrame[] {
  return readFixture('pds-scenario/frames.jsonl')
    .trim()
    .split('\n')
    .map((line) => JSON.parse(line) as ScenarioFrame)
}
