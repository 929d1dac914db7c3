/**
 * Fetches and parses DID documents: did:plc from the operator's PLC directory
 * (trusted as configured, no redirects) and did:web from the DID's own host
 * (hostname only, SSRF-guarded, a few redirects each re-checked).
 */
import { Agent, type Dispatcher } from 'undici'
import { isValidDid } from '../atproto/syntax.js'
import { parseDidDocument, type IdentityResult } from './did-doc.js'
import { fetchBounded, FetchError } from '../net/http-fetch.js'
import { assertPublicUrl, createGuardedDispatcher, findCause, type AddressLookup, type HostPolicy } from '../net/net-guard.js'

export type DidMethod = 'plc' | 'web'

/** What the identity directory needs from a resolver (a fake one in tests). */
export interface DidResolverLike {
  resolve(did: string): Promise<IdentityResult>
}

export interface DidResolverOptions {
  /** PLC directory base URL, e.g. https://plc.directory (operator-configured, trusted). */
  plcUrl: string
  /** Development: did:web:localhost%3A<port> over http, loopback addresses allowed. */
  allowInsecure?: boolean
  /** Whole request, redirects included (default 10 s). */
  timeoutMs?: number
  /** TCP/TLS connect (default 5 s). */
  connectTimeoutMs?: number
  /** Largest DID document accepted (default 128 KiB). */
  maxDocBytes?: number
  /** did:web redirects followed (default 3). */
  maxRedirects?: number
  /** Address lookup for did:web hosts (default: system DNS). */
  lookup?: AddressLookup
}

export const DID_DOC_ACCEPT = 'application/did+ld+json,application/json'
const PLC_DID = /^did:plc:[a-z2-7]{24}$/

export function didMethod(did: string): DidMethod | null {
  if (PLC_DID.test(did)) return 'plc'
  if (did.startsWith('did:web:')) return 'web'
  return null
}

/**
 * The authority of a did:web (`host`, or `localhost:<port>`), or null for a
 * path-based or malformed one.
 */
export function webDidAuthority(did: string): string | null {
  const rest = did.slice('did:web:'.length)
  if (rest === '' || rest.includes(':')) return null // path-based did:web is unsupported
  const decoded = rest.replace(/%3a/gi, ':')
  if (decoded.includes('%')) return null
  const colon = decoded.indexOf(':')
  if (colon >= 0) {
    const host = decoded.slice(0, colon)
    const port = decoded.slice(colon + 1)
    if (host !== 'localhost' || !/^[0-9]{1,5}$/.test(port)) return null // a port only for localhost
  }
  return decoded.toLowerCase()
}

export class DidResolver implements DidResolverLike {
  readonly plcUrl: string
  private readonly policy: HostPolicy
  private readonly plcDispatcher: Dispatcher
  private readonly webDispatcher: Dispatcher
  private readonly timeoutMs: number
  private readonly maxDocBytes: number
  private readonly maxRedirects: number

  constructor(opts: DidResolverOptions) {
    this.plcUrl = opts.plcUrl.replace(/\/+$/, '')
    this.policy = { allowLoopback: opts.allowInsecure ?? false }
    this.timeoutMs = opts.timeoutMs ?? 10_000
    this.maxDocBytes = opts.maxDocBytes ?? 128 * 1024
    this.maxRedirects = opts.maxRedirects ?? 3
    const connectTimeoutMs = opts.connectTimeoutMs ?? 5_000
    this.plcDispatcher = new Agent({
      connect: { timeout: connectTimeoutMs },
      // Kept-alive connections to the one directory; a burst of new DIDs queues on them instead of
      // opening a TLS connection per lookup (256 at once when a big host is first crawled).
      connections: 32,
      headersTimeout: this.timeoutMs,
      bodyTimeout: this.timeoutMs,
    })
    this.webDispatcher = createGuardedDispatcher({
      allowLoopback: this.policy.allowLoopback,
      connectTimeoutMs,
      responseTimeoutMs: this.timeoutMs,
      // did:web: one document per domain.
      connectionsPerOrigin: 1,
      ...(opts.lookup ? { lookup: opts.lookup } : {}),
    })
  }

  async resolve(did: string): Promise<IdentityResult> {
    if (!isValidDid(did)) return { status: 'failed', did, error: 'invalid DID syntax' }
    const method = didMethod(did)
    if (method === 'plc') return this.resolvePlc(did)
    if (method === 'web') return this.resolveWeb(did)
    if (did.startsWith('did:plc:')) return { status: 'failed', did, error: 'invalid did:plc identifier' }
    return { status: 'failed', did, error: `unsupported DID method ${did.split(':')[1] ?? ''}` }
  }

  private async resolvePlc(did: string): Promise<IdentityResult> {
    return this.fetchDoc(did, `${this.plcUrl}/${did}`, this.plcDispatcher, 0, undefined)
  }

  private async resolveWeb(did: string): Promise<IdentityResult> {
    const authority = webDidAuthority(did)
    if (!authority) return { status: 'failed', did, error: 'unsupported did:web (path-based or port on a non-localhost host)' }
    const scheme = authority.startsWith('localhost:') ? 'http' : 'https'
    if (scheme === 'http' && !this.policy.allowLoopback) {
      return { status: 'failed', did, error: 'did:web with a port is only allowed in development' }
    }
    const policy = this.policy
    return this.fetchDoc(did, `${scheme}://${authority}/.well-known/did.json`, this.webDispatcher, this.maxRedirects, (url) =>
      assertPublicUrl(url, policy),
    )
  }

  private async fetchDoc(
    did: string,
    url: string,
    dispatcher: Dispatcher,
    maxRedirects: number,
    checkUrl: ((url: URL) => void) | undefined,
  ): Promise<IdentityResult> {
    let res
    try {
      res = await fetchBounded(url, {
        dispatcher,
        accept: DID_DOC_ACCEPT,
        maxBytes: this.maxDocBytes,
        timeoutMs: this.timeoutMs,
        maxRedirects,
        ...(checkUrl ? { checkUrl } : {}),
      })
    } catch (err) {
      if (err instanceof FetchError) {
        // NXDOMAIN is "not found" for did:web (PROTOCOL §5.3)
        const code = findCode(err.cause)
        if (err.reason === 'dns_failed' && (code === 'ENOTFOUND' || code === 'ENODATA')) {
          return { status: 'not_found', did, error: err.message }
        }
        return { status: 'failed', did, error: `${err.reason}: ${err.message}` }
      }
      return { status: 'failed', did, error: String(err) }
    }
    if (res.status === 404 || res.status === 410) return { status: 'not_found', did, error: `HTTP ${res.status} from ${res.url.host}` }
    if (res.status >= 300 && res.status < 400) return { status: 'failed', did, error: `unexpected redirect (HTTP ${res.status}) from ${res.url.host}` }
    if (res.status !== 200) return { status: 'failed', did, error: `HTTP ${res.status} from ${res.url.host}` }
    let doc: unknown
    try {
      doc = JSON.parse(res.body.toString('utf8'))
    } catch {
      return { status: 'failed', did, error: `DID document from ${res.url.host} is not JSON` }
    }
    return parseDidDocument(did, doc)
  }

  async close(): Promise<void> {
    await Promise.all([this.plcDispatcher.close(), this.webDispatcher.close()])
  }
}

function findCode(err: unknown): string | undefined {
  return findCause(err, (e): e is { code: string } => typeof (e as { code?: unknown }).code === 'string')?.code
}
