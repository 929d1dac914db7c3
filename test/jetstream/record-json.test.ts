/**
 * Jetstream's record JSON is the atproto data-model JSON that @atproto/lex-json produces (CID links as
 * `$link`, bytes as `$bytes`), checked on real production commits (fixtures/indigo/repo, through the
 * whole per-op message builder) and on the interop data-model vectors (links, bytes, nesting).
 */
import { readdirSync, readFileSync } from 'node:fs'
import { decode as lexCborDecode } from '@atproto/lex-cbor'
import { lexToJson } from '@atproto/lex-json'
import { describe, expect, it } from 'vitest'
import { readCarSlice } from '../../src/atproto/car.js'
import { cidFromString } from '../../src/atproto/cid.js'
import { jetstreamMessages } from '../../src/jetstream/event-messages.js'
import { recordJson } from '../../src/jetstream/record-json.js'
import { encodeMessageFrame } from '../helpers/frames.js'
import { fromJsonModel } from '../atproto/support/fixtures.js'

const fixtures = new URL('../fixtures/', import.meta.url)


/** What @atproto/lex-json makes of a DAG-CBOR block. */
function referenceJson(block: Uint8Array): unknown {
  return lexToJson(lexCborDecode(block) as Parameters<typeof lexToJson>[0])
}

describe('record JSON', () => {
  const commitFiles = readdirSync(new URL('indigo/repo/', fixtures)).filter((f) => f.startsWith('firehose_commit_'))

  it('matches @atproto/lex-json for every record block of real commits, and the message builder emits one commit per op', () => {
    expect(commitFiles.length).toBeGreaterThan(0)
    let records = 0
    let withLinks = 0
    for (const file of commitFiles) {
      const body = JSON.parse(readFileSync(new URL(`indigo/repo/${file}`, fixtures), 'utf8')) as Record<string, unknown>
      const frame = encodeMessageFrame('#commit', fromJsonModel(body) as Record<string, unknown>)
      const { messages, skippedOps } = jetstreamMessages(frame, 1_700_000_000_000_123)
      expect(skippedOps).toBe(0)
      const ops = body.ops as { action: string; path: string; cid: { $link: string } | null }[]
      expect(messages).toHaveLength(ops.length)
      const blocks = readCarSlice(Buffer.from((body.blocks as { $bytes: string }).$bytes, 'base64')).blocks
      for (const [i, op] of ops.entries()) {
        const m = JSON.parse(messages[i]!.json.toString('utf8')) as Record<string, any>
        const [collection, rkey] = op.path.split('/')
        expect(messages[i]!.collection).toBe(collection)
        expect(m).toMatchObject({ did: body.repo, time_us: 1_700_000_000_000_123, kind: 'commit' })
        expect(m.commit).toMatchObject({ rev: body.rev, operation: op.action, collection, rkey })
        if (op.action === 'delete') {
          expect(m.commit.record).toBeUndefined()
          continue
        }
        expect(m.commit.cid).toBe(op.cid!.$link)
        const block = blocks.get(cidFromString(op.cid!.$link))!
        expect(m.commit.record).toEqual(referenceJson(block))
        expect(JSON.parse(recordJson(block))).toEqual(referenceJson(block))
        records++
        if (JSON.stringify(m.commit.record).includes('"$link"')) withLinks++
      }
    }
    expect(records).toBeGreaterThan(0)
    // 45 records in these commits, one of them holding a CID link (a blob ref).
    expect(withLinks).toBeGreaterThan(0)
  })

  it('matches @atproto/lex-json and the interop JSON for data-model vectors with links, bytes and nested objects', () => {
    const vectors = JSON.parse(readFileSync(new URL('interop/data-model/data-model-fixtures.json', fixtures), 'utf8')) as { json: unknown; cbor_base64: string }[]
    const kinds = new Set<string>()
    for (const v of vectors) {
      const cbor = Buffer.from(v.cbor_base64, 'base64')
      const ours = JSON.parse(recordJson(cbor)) as unknown
      expect(ours).toEqual(referenceJson(cbor))
      expect(ours).toEqual(v.json)
      const text = JSON.stringify(v.json)
      if (text.includes('"$link"')) kinds.add('link')
      if (text.includes('"$bytes"')) kinds.add('bytes')
      if (/\{[^{}]*\{[^{}]*\{/.test(text)) kinds.add('nested')
    }
    expect([...kinds].sort()).toEqual(['bytes', 'link', 'nested'])
  })

  it('refuses a record nested past the data-model depth instead of decoding it', () => {
    // 40 nested arrays: deeper than 32.
    const deep = Buffer.concat([Buffer.alloc(40, 0x81), Buffer.from([0x01])])
    expect(() => recordJson(deep)).toThrow(/deep/)
  })
})
