/**
 * Opening one subscribeRepos socket to an upstream host: the URL, the SSRF check, the socket
 * options every dial uses, and reading what a host says in its upgrade answer (a relay's
 * `Server` header, a refusal's `Retry-After`). The connection's lifecycle is host-connection.ts.
 */
import type { IncomingMessage } from 'node:http'
import type { LookupFunction } from 'node:net'
import WebSocket from 'ws'
import { MAX_FRAME_BYTES } from '../atproto/frame.js'
import { assertPublicUrl, type HostPolicy } from '../net/net-guard.js'
import { VERSION } from '../package-root.js'
import type { UpstreamHost } from './types.js'

/** Sent upstream on every request; the `atproto-relay` token lets hosts and other relays detect loops. */
export const USER_AGENT = `atrelay/${VERSION} (atproto-relay)`
/** A host's Retry-After is obeyed up to an hour: a bogus huge value must not park the host for good. */
const MAX_RETRY_AFTER_MS = 3_600_000

/** A `Server` (or `Via`) header containing this marks a relay: crawling it would make a loop. */
export function isRelayServerHeader(value: string | string[] | undefined): boolean {
  const v = Array.isArray(value) ? value.join(' ') : (value ?? '')
  return v.toLowerCase().includes('atproto-relay')
}

/** The subscribeRepos URL at `cursor`; `live` leaves the cursor out (only the newest events). */
export function subscribeReposUrl(host: UpstreamHost, cursor: number, live: boolean): string {
  const scheme = host.ssl ? 'wss' : 'ws'
  return `${scheme}://${host.hostname}/xrpc/com.atproto.sync.subscribeRepos${live ? '' : `?cursor=${cursor}`}`
}

/** A refused upgrade's Retry-After in ms, capped; undefined when absent or not a positive number. */
export function retryAfterMs(res: IncomingMessage): number | undefined {
  const seconds = Number(res.headers['retry-after'])
  return Number.isFinite(seconds) && seconds > 0 ? Math.min(seconds * 1_000, MAX_RETRY_AFTER_MS) : undefined
}

export interface DialOptions {
  policy: HostPolicy
  /** The guarded lookup: the address the socket connects to is checked again after DNS. */
  lookup: LookupFunction
  handshakeTimeoutMs: number
}

/** Starts the socket; throws (before any I/O) when the host's name is not allowed by `policy`. */
export function openUpstreamSocket(host: UpstreamHost, url: string, opts: DialOptions): WebSocket {
  assertPublicUrl(new URL(`${host.ssl ? 'https' : 'http'}://${host.hostname}/`), opts.policy)
  const wsOptions: WebSocket.ClientOptions & { lookup: LookupFunction } = {
    maxPayload: MAX_FRAME_BYTES,
    perMessageDeflate: false,
    handshakeTimeout: opts.handshakeTimeoutMs,
    followRedirects: false,
    headers: { 'User-Agent': USER_AGENT },
    lookup: opts.lookup,
  }
  return new WebSocket(url, wsOptions)
}
