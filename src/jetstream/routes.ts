/**
 * Jetstream's routes on the API port: v1 `/subscribe`, v2 `subscribeEvents`
 * and `getZstdDictionary`. Takes the HTTP server structurally, so this folder
 * does not depend on src/api.
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Duplex } from 'node:stream'
import { XrpcError } from '../atproto/xrpc-error.js'
import { Params } from '../http/params.js'
import { JETSTREAM_V1_PATH, JETSTREAM_V2_PATH, type JetstreamServer } from './server.js'
import { GET_ZSTD_DICTIONARY_NSID } from './v2-params.js'

export interface JetstreamRouteHost {
  upgradeRoute(path: string, handler: (req: IncomingMessage, socket: Duplex, head: Buffer) => void): void
  query(nsid: string, handler: (ctx: { res: ServerResponse; params: URLSearchParams }) => undefined): void
}

export function registerJetstreamRoutes(http: JetstreamRouteHost, jetstream: JetstreamServer): void {
  http.upgradeRoute(JETSTREAM_V1_PATH, (req, socket, head) => jetstream.handleUpgrade(req, socket, head))
  http.upgradeRoute(JETSTREAM_V2_PATH, (req, socket, head) => jetstream.handleUpgradeV2(req, socket, head))
  http.query(GET_ZSTD_DICTIONARY_NSID, ({ res, params }) => {
    const codec = jetstream.codec('v2')
    const id = Params.query(params).integer('id', { min: 1, max: 4_294_967_295, default: codec.id })
    if (id !== codec.id) throw new XrpcError(400, 'DictionaryNotFound', `no zstd dictionary ${id} here; the current one is ${codec.id}`)
    res.writeHead(200, {
      'Content-Type': 'application/octet-stream',
      'Content-Length': codec.dictionary.length,
      // Immutable for a given ID (lexicon).
      'Cache-Control': 'public, max-age=31536000, immutable',
    })
    res.end(codec.dictionary)
    return undefined
  })
}
