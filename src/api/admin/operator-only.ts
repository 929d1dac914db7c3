/**
 * Admin writes come only from the operator: from the admin page on the
 * relay's own origin, or from a non-browser client (the CLI, curl). A page on
 * another site can make the operator's browser send requests that carry the
 * cached Basic credentials, but it cannot set `Content-Type: application/json`
 * without a CORS preflight (which the admin surface never grants), and the
 * browser names its origin in `Origin` / `Sec-Fetch-Site`.
 */
import type { IncomingMessage } from 'node:http'
import { isJsonContentType } from '../content-type.js'
import { XrpcError } from '../../atproto/xrpc-error.js'

/** Paths that never answer CORS: the admin page, its API and com.atproto.admin.*. */
export function isAdminPath(path: string): boolean {
  return path === '/admin' || path.startsWith('/admin/') || path.startsWith('/xrpc/com.atproto.admin.')
}

/** Throws 403 for a cross-origin browser request, then 415 unless the body is declared as JSON. */
export function requireOperatorWrite(req: IncomingMessage): void {
  requireSameOrigin(req)
  requireJsonContentType(req)
}

function requireSameOrigin(req: IncomingMessage): void {
  const site = req.headers['sec-fetch-site']
  if (site !== undefined && site !== 'same-origin' && site !== 'none')
    throw forbidden(`admin writes are refused from another site (Sec-Fetch-Site: ${site})`)
  const origin = req.headers.origin
  if (origin === undefined) return // not a browser, or a browser that sent no Origin: nothing forged
  if (!ownHosts(req).includes(hostOf(origin) ?? '')) throw forbidden(`admin writes are refused from origin ${origin}`)
}

/** The relay's own host[:port] as this request names it; behind a proxy, X-Forwarded-Host too (a browser cannot set it cross-origin). */
function ownHosts(req: IncomingMessage): string[] {
  const forwarded = req.headers['x-forwarded-host']
  const first = (Array.isArray(forwarded) ? forwarded[0] : forwarded)?.split(',')[0]?.trim()
  return [req.headers.host, first].filter((h): h is string => !!h).map((h) => h.toLowerCase())
}

function hostOf(origin: string): string | undefined {
  if (origin === 'null') return undefined // opaque origin: sandboxed frame, file:, data:
  try {
    return new URL(origin).host.toLowerCase()
  } catch {
    return undefined
  }
}

/** The media type must be exactly application/json; the only parameter allowed is charset=utf-8. */
function requireJsonContentType(req: IncomingMessage): void {
  const header = req.headers['content-type'] ?? ''
  if (!isJsonContentType(header))
    throw new XrpcError(415, 'UnsupportedMediaType', `admin writes need Content-Type: application/json (got ${JSON.stringify(header.slice(0, 100))})`)
}

const forbidden = (message: string) => new XrpcError(403, 'Forbidden', message)
