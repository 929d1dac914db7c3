import { describe, expect, it } from 'vitest'
import { Params } from '../../src/http/params.js'
import { XrpcError } from '../../src/atproto/xrpc-error.js'

const q = (s: string) => Params.query(new URLSearchParams(s))
const refusal = (fn: () => unknown) => {
  try {
    fn()
  } catch (err) {
    expect(err).toBeInstanceOf(XrpcError)
    expect((err as XrpcError).status).toBe(400)
    expect((err as XrpcError).error).toBe('InvalidRequest')
    return (err as XrpcError).message
  }
  throw new Error('not refused')
}

describe('Params', () => {
  it('refuses control characters, invalid UTF-8, lone surrogates and over-long values, naming the parameter', () => {
    expect(refusal(() => q('hostname=a%00b.com').required('hostname', 'hostname'))).toBe('Parameter "hostname" contains a control character')
    expect(refusal(() => q('hostname=a%1Bb').required('hostname', 'hostname'))).toMatch(/control/)
    expect(refusal(() => q('hostname=a%C2%85b').required('hostname', 'hostname'))).toMatch(/control/) // C1 NEL
    expect(refusal(() => q('hostname=a%FFb.com').required('hostname', 'hostname'))).toBe('Parameter "hostname" is not valid UTF-8')
    expect(refusal(() => q('hostname=%C3%28').required('hostname', 'hostname'))).toMatch(/UTF-8/)
    expect(refusal(() => Params.body({ hostname: 'x\ud800' }).required('hostname', 'hostname'))).toMatch(/"hostname" is not valid UTF-8/)
    expect(refusal(() => q(`hostname=${'a'.repeat(301)}`).required('hostname', 'hostname'))).toBe('Parameter "hostname" is longer than 300 characters')
    expect(refusal(() => q(`did=did:plc:${'a'.repeat(2048)}`).required('did', 'did'))).toMatch(/longer than 2048/)
    expect(refusal(() => q(`x=${'a'.repeat(2049)}`).optional('x'))).toMatch(/"x" is longer than 2048/)
    // a paired surrogate (an emoji) and ordinary non-ASCII text are fine
    expect(Params.body({ s: 'é🦋' }).required('s')).toBe('é🦋')
    expect(q('s=%C3%A9%F0%9F%A6%8B').required('s')).toBe('é🦋')
  })

  it('formats, duplicates and absence', () => {
    expect(q('did=did:plc:abc').required('did', 'did')).toBe('did:plc:abc')
    expect(refusal(() => q('did=nope').required('did', 'did'))).toBe('Parameter "did" must be a valid did')
    expect(refusal(() => q('did=a&did=b').optional('did'))).toBe('Parameter "did" must be given once')
    expect(refusal(() => q('').required('did', 'did'))).toBe('Params must have the property "did"')
    expect(refusal(() => Params.body({}).required('did', 'did'))).toBe('Input must have the property "did"')
    expect(q('').optional('did', 'did')).toBeUndefined()
  })

  it('integers: decimal strings in a query, JSON numbers in a body', () => {
    expect(q('limit=5').integer('limit', { min: 1, max: 10, default: 2 })).toBe(5)
    expect(q('').integer('limit', { min: 1, max: 10, default: 2 })).toBe(2)
    for (const bad of ['1.5', '1e3', '0x10', '', ' 5', '5 ', '+5', '9'.repeat(40)]) expect(refusal(() => q(`limit=${encodeURIComponent(bad)}`).integer('limit', { min: 1, max: 10, default: 2 })), bad).toMatch(/"limit"/)
    expect(refusal(() => q('limit=11').integer('limit', { min: 1, max: 10, default: 2 }))).toBe('Parameter "limit" must be between 1 and 10')
    expect(Params.body({ n: 7 }).integer('n', { min: 0, max: 10 })).toBe(7)
    for (const bad of ['7', 7.5, 1e308, null, true, [7]]) expect(refusal(() => Params.body({ n: bad }).integer('n', { min: 0, max: Number.MAX_SAFE_INTEGER })), String(bad)).toMatch(/"n" must be an integer/)
    expect(refusal(() => Params.body({}).integer('n', { min: 0, max: 10 }))).toMatch(/property "n"/)
  })

  it('booleans, nullable booleans, nested objects and non-string values', () => {
    expect(Params.body({ b: false }).boolean('b')).toBe(false)
    expect(q('b=true').boolean('b')).toBe(true)
    expect(Params.body({}).boolean('b')).toBeUndefined()
    expect(refusal(() => Params.body({ b: 'true' }).boolean('b'))).toBe('Parameter "b" must be a boolean')
    expect(Params.body({ b: null }).nullableBoolean('b')).toBeNull()
    expect(refusal(() => Params.body({}).nullableBoolean('b'))).toMatch(/property "b"/)
    expect(Params.body({ s: { did: 'did:plc:x' } }).object('s').required('did', 'did')).toBe('did:plc:x')
    expect(refusal(() => Params.body({ s: 'x' }).object('s'))).toBe('Parameter "s" must be a JSON object')
    expect(refusal(() => Params.body([1]))).toBe('request body must be a JSON object')
    expect(refusal(() => Params.body({ h: 42 }).required('h', 'hostname'))).toBe('Parameter "h" must be a string')
    expect(refusal(() => Params.body({ h: ['a.com'] }).required('h', 'hostname'))).toBe('Parameter "h" must be a string')
    // inherited members are not parameters
    expect(Params.body({}).has('constructor')).toBe(false)
  })

  it('cursors and lists', () => {
    expect(q('cursor=42').cursor()).toBe(42)
    expect(q('cursor=').cursor()).toBeUndefined()
    expect(refusal(() => q('cursor=-1').cursor())).toMatch(/not a cursor/)
    expect(q('c=a&c=b').list('c', 'string')).toEqual(['a', 'b'])
    expect(refusal(() => q('c=a&c=%00').list('c', 'string'))).toMatch(/"c" contains a control/)
    expect(refusal(() => q('').list('c', 'cid', { required: true }))).toMatch(/property "c"/)
  })
})
