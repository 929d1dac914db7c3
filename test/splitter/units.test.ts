/** The splitter's pure parts (the header-only frame read, the upstream URL forms) and its configuration checks. */
import { describe, expect, it } from 'vitest'
import { encode, toBytes } from '@atcute/cbor'
import { httpBase, OTHER_EVENT_KIND, readUpstreamFrame, subscribeUrl } from '../../src/splitter/index.js'
import { sameRelay } from '../../src/splitter/upstream-client.js'
import { frameDid } from '../../src/atproto/frame-did.js'
import { loadConfig } from '../../src/config.js'
import { spawnRelay } from '../helpers/child.js'
import { encodeErrorFrame, encodeInfoFrame, encodeMessageFrame } from '../helpers/frames.js'
import { waitUntil } from '../helpers/wait.js'

describe('readUpstreamFrame', () => {
  it('reads type, seq and time of an event and keeps the bytes as they came', () => {
    const bytes = encodeMessageFrame('#commit', { repo: 'did:plc:x', seq: 42, time: '2026-12-02T00:00:00.000Z', blocks: toBytes(new Uint8Array(8)) })
    const frame = readUpstreamFrame(Buffer.from(bytes), true)
    expect(frame).toMatchObject({ kind: 'event', seq: 42, t: '#commit', code: 1, time: '2026-12-02T00:00:00.000Z' })
    if (frame.kind === 'event') expect(Buffer.from(frame.bytes).equals(Buffer.from(bytes))).toBe(true)
  })

  it("reads the event's DID (repo of a #commit, did of the other kinds), as the log reader does from a stored frame", () => {
    const commit = encodeMessageFrame('#commit', { repo: 'did:plc:alice', seq: 1, blocks: toBytes(new Uint8Array(8)), ops: [{ action: 'create', path: 'a/b' }] })
    const identity = encodeMessageFrame('#identity', { did: 'did:plc:bob', seq: 2 })
    const neither = encodeMessageFrame('#labels', { seq: 3 })
    expect(readUpstreamFrame(Buffer.from(commit), true)).toMatchObject({ kind: 'event', did: 'did:plc:alice' })
    expect(readUpstreamFrame(Buffer.from(identity), true)).toMatchObject({ kind: 'event', did: 'did:plc:bob' })
    expect(readUpstreamFrame(Buffer.from(neither), true)).toMatchObject({ kind: 'event', did: '' })
    expect([commit, identity, neither].map((f) => frameDid(f))).toEqual(['did:plc:alice', 'did:plc:bob', ''])
    expect(frameDid(new Uint8Array([0xff, 0x00]))).toBe('')
    expect(frameDid(encode({ op: 1, t: '#commit' }))).toBe('')
  })

  it('keeps a sequenced type the relay never emits, under kind 0', () => {
    expect(readUpstreamFrame(Buffer.from(encodeMessageFrame('#labels', { seq: 7 })), true)).toMatchObject({ kind: 'event', seq: 7, code: OTHER_EVENT_KIND })
  })

  it('tells #info, error frames and non-frames apart', () => {
    expect(readUpstreamFrame(Buffer.from(encodeInfoFrame('OutdatedCursor', 'too old')), true)).toMatchObject({ kind: 'info', name: 'OutdatedCursor', message: 'too old' })
    expect(readUpstreamFrame(Buffer.from(encodeErrorFrame('FutureCursor', 'ahead')), true)).toEqual({ kind: 'error', error: 'FutureCursor', message: 'ahead' })
    expect(readUpstreamFrame(Buffer.from('hello'), false).kind).toBe('refused')
    expect(readUpstreamFrame(Buffer.from(encode({ op: 1, t: '#commit' })), true).kind).toBe('refused')
    expect(readUpstreamFrame(Buffer.from([0xff, 0x00]), true).kind).toBe('refused')
    // A seq that is not a positive safe integer is no seq: never stored.
    expect(readUpstreamFrame(Buffer.from(encodeMessageFrame('#commit', { seq: -1 })), true).kind).toBe('info')
  })

  it('refuses a header nested past its limit without decoding it', () => {
    let deep: unknown = 1
    for (let i = 0; i < 10; i++) deep = { a: deep }
    const bytes = new Uint8Array([...encode({ op: 1, t: deep }), ...encode({ seq: 1 })])
    expect(readUpstreamFrame(Buffer.from(bytes), true).kind).toBe('refused')
  })
})

describe('upstream URL forms', () => {
  it('subscribes over ws(s) and queries over http(s), whichever form is configured', () => {
    expect(subscribeUrl('https://relay.example.com')).toBe('wss://relay.example.com/xrpc/com.atproto.sync.subscribeRepos')
    expect(subscribeUrl('ws://127.0.0.1:2470/')).toBe('ws://127.0.0.1:2470/xrpc/com.atproto.sync.subscribeRepos')
    expect(httpBase('wss://relay.example.com')).toBe('https://relay.example.com')
    expect(httpBase('ws://127.0.0.1:2470')).toBe('http://127.0.0.1:2470')
  })

  it('one relay written two ways is one seq space; another host or port is not', () => {
    expect(sameRelay('https://relay.example.com', 'wss://relay.example.com/')).toBe(true)
    expect(sameRelay('https://relay.example.com', 'https://relay2.example.com')).toBe(false)
    expect(sameRelay('ws://127.0.0.1:1', 'ws://127.0.0.1:2')).toBe(false)
  })
})

describe('splitter configuration', () => {
  it('refuses a bad upstream or fallback URL at start-up, naming the variable', () => {
    expect(() => loadConfig({ RELAY_SPLITTER_UPSTREAM: 'ftp://relay.example.com' })).toThrow(/RELAY_SPLITTER_UPSTREAM: expected a https: or wss: or http: or ws: URL/)
    expect(() => loadConfig({ RELAY_SPLITTER_FALLBACK: 'not a url' })).toThrow(/RELAY_SPLITTER_FALLBACK: expected a URL/)
    expect(() => loadConfig({ RELAY_SPLITTER_FAILOVER_AFTER: 'soon' })).toThrow(/RELAY_SPLITTER_FAILOVER_AFTER/)
    expect(loadConfig({ RELAY_SPLITTER_UPSTREAM: 'wss://relay.example.com/' }).splitterUpstream).toBe('wss://relay.example.com')
  })

  it('`atrelay splitter` without an upstream, or with a bad --upstream, exits with one line', async () => {
    for (const [args, message] of [
      [['splitter'], 'the upstream relay is required'],
      [['splitter', '--upstream', 'gopher://x'], 'RELAY_SPLITTER_UPSTREAM: expected a https: or wss: or http: or ws: URL'],
      [['splitter', '--upstream', 'https://x.test', '--bogus'], "Unknown option '--bogus'"],
    ] as const) {
      const env: Record<string, string> = { RELAY_DATA_DIR: 'memory://' }
      const child = spawnRelay([...args], env)
      const { code } = await child.exited
      expect(code, args.join(' ')).toBe(1)
      await waitUntil(() => child.stderr.some((l) => l.includes(message)), `stderr to say ${message}`)
    }
  }, 60_000)
})
