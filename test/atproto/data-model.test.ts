import { decode, encode } from '@atcute/cbor'
import { describe, expect, it } from 'vitest'
import { cidForCbor, cidFromString, cidToString } from '../../src/atproto/cid.js'
import { fromJsonModel, readFixture } from './support/fixtures.js'

const fixtures = JSON.parse(readFixture('interop/data-model/data-model-fixtures.json')) as {
  json: unknown
  cbor_base64: string
  cid: string
}[]

describe('data model fixtures (canonical CBOR and CIDs our frames and commits rely on)', () => {
  it('JSON → canonical CBOR → CID, and CBOR decodes and re-encodes byte for byte', () => {
    expect(fixtures.length).toBe(3)
    for (const { json, cbor_base64, cid } of fixtures) {
      const cbor = new Uint8Array(Buffer.from(cbor_base64, 'base64'))
      expect(Buffer.from(encode(fromJsonModel(json))).toString('base64')).toBe(Buffer.from(cbor).toString('base64'))
      expect(cidToString(cidForCbor(cbor))).toBe(cid)
      expect(Buffer.from(cidFromString(cid)).equals(Buffer.from(cidForCbor(cbor)))).toBe(true)
      expect(Buffer.from(encode(decode(cbor))).equals(Buffer.from(cbor))).toBe(true)
    }
  })
})
