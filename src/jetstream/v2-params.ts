/**
 * The parameters of a v2 `network.bsky.jetstream.subscribeEvents` upgrade
 * (lexicon in assets/jetstream/subscribeEvents.json), checked before the
 * upgrade: every problem is a 400 naming it. Pure: no I/O.
 */
import { invalidRequest, XrpcError } from '../atproto/xrpc-error.js'
import { Params } from '../http/params.js'
import type { JetKind } from './event-messages.js'
import { checkCollections, checkDids, type FilterSpec } from './filter.js'

export const SUBSCRIBE_EVENTS_NSID = 'network.bsky.jetstream.subscribeEvents'
export const GET_ZSTD_DICTIONARY_NSID = 'network.bsky.jetstream.getZstdDictionary'
export const V2_SUBPROTOCOL = 'xrpc.v1.json'
/** Cursors at or above this are unix microseconds, below it seqs (the lexicon's rule). */
export const TIME_CURSOR_FLOOR = 1e15

const KINDS: readonly JetKind[] = ['commit', 'identity', 'account', 'sync']
const LEGACY = ['wantedCollections', 'wantedDids', 'compress', 'requireHello'] as const

export type V2Cursor = { type: 'seq'; seq: number } | { type: 'time'; timeUs: number } | null

export interface V2Request {
  filter: FilterSpec
  cursor: V2Cursor
  /** The zstd dictionary asked for (checked against the current one by the caller), or null for text frames. */
  zstdDictionary: number | null
}

export function parseV2Upgrade(url: URL, headers: { protocol?: string | string[] }): V2Request {
  const params = Params.query(url.searchParams)
  for (const name of LEGACY) {
    if (params.has(name)) throw invalidRequest(`${name} is a v1 /subscribe parameter; subscribeEvents takes kinds, dids, collections and zstdDictionary`)
  }
  const offered = String(headers.protocol ?? '')
  if (offered !== '' && !offered.split(',').some((p) => p.trim() === V2_SUBPROTOCOL)) {
    throw invalidRequest(`subscribeEvents speaks the ${V2_SUBPROTOCOL} subprotocol; offered: ${offered.slice(0, 100)}`)
  }
  const kinds = [...new Set(params.list('kinds', 'string'))]
  for (const k of kinds) if (!(KINDS as readonly string[]).includes(k)) throw invalidRequest(`kinds: "${k.slice(0, 40)}" is not one of ${KINDS.join(', ')}`)
  const collections = checkCollections(params.list('collections', 'string'), 'collections')
  if (collections.length > 0 && kinds.length > 0 && !kinds.includes('commit')) throw invalidRequest('collections only filters commits, and kinds excludes commit: the filter could never apply')
  const dids = checkDids(params.list('dids', 'string'), 'dids')
  const maxMessageSizeBytes = params.integer('maxMessageSizeBytes', { min: 0, max: 4_294_967_295, default: 0 })
  let cursor: V2Cursor = null
  if (params.has('cursor')) {
    const n = params.integer('cursor', { min: 0, max: Number.MAX_SAFE_INTEGER })
    cursor = n >= TIME_CURSOR_FLOOR ? { type: 'time', timeUs: n } : { type: 'seq', seq: n }
  }
  const zstdDictionary = params.has('zstdDictionary') ? params.integer('zstdDictionary', { min: 1, max: 4_294_967_295 }) : null
  return { filter: { wantedCollections: collections, wantedDids: dids, maxMessageSizeBytes, kinds: kinds as JetKind[] }, cursor, zstdDictionary }
}

export function cursorTooOld(cursor: number, oldest: number): XrpcError {
  return new XrpcError(400, 'CursorTooOld', `cursor ${cursor} is below the oldest retained seq ${oldest}`)
}

export function unknownDictionary(asked: number, current: number): XrpcError {
  return new XrpcError(400, 'UnknownZstdDictionary', `zstd dictionary ${asked} is unknown; the current one is ${current}`)
}
