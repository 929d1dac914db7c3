/**
 * The parameters of a v1 `/subscribe` upgrade (JETSTREAM.md), checked before
 * the upgrade: every problem is a 400 naming it. Pure: no I/O.
 */
import type { IncomingMessage } from 'node:http'
import { invalidRequest } from '../atproto/xrpc-error.js'
import { Params } from '../http/params.js'
import { filterFromQuery, JetFilter } from './filter.js'
import type { JetWire } from './jet-event.js'
import type { WireEncoding } from './metrics.js'

export interface UpgradeRequest {
  wire: JetWire
  filter: JetFilter
  /** v1: unix µs; v2: a seq or a time. */
  cursor: { type: 'seq'; seq: number } | { type: 'time'; timeUs: number } | null
  encoding: WireEncoding
  requireHello: boolean
}

/** Every parameter of a v1 upgrade, or an XrpcError (400) naming the bad one. */
export function parseUpgrade(req: IncomingMessage): UpgradeRequest {
  const url = new URL(req.url ?? '/', 'http://relay.invalid')
  const params = Params.query(url.searchParams)
  const filter = new JetFilter(filterFromQuery(params))
  const cursor = params.has('cursor') ? params.integer('cursor', { min: 0, max: Number.MAX_SAFE_INTEGER }) : null
  const compressParam = params.boolean('compress') ?? false
  const requireHello = params.boolean('requireHello') ?? false
  const socketEncoding = req.headers['socket-encoding']
  const zstd = compressParam || (typeof socketEncoding === 'string' && socketEncoding.trim().toLowerCase() === 'zstd')
  const deflateOffered = /permessage-deflate/i.test(String(req.headers['sec-websocket-extensions'] ?? ''))
  if (zstd && deflateOffered) {
    throw invalidRequest('zstd compression (compress=true or Socket-Encoding: zstd) and permessage-deflate cannot be combined: offer one of them')
  }
  return {
    wire: 'v1',
    filter,
    cursor: cursor === null ? null : { type: 'time', timeUs: cursor },
    encoding: zstd ? 'zstd' : deflateOffered ? 'deflate' : 'text',
    requireHello,
  }
}
