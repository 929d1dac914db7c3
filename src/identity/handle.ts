/**
 * Handle → DID (PROTOCOL §5.5): DNS TXT `_atproto.<handle>` and HTTPS
 * `/.well-known/atproto-did`, run in parallel, DNS preferred. The DNS lookup is
 * injectable so tests never query real DNS.
 */
import dns from 'node:dns'
import type { Dispatcher } from 'undici'
import { isValidDid, isValidHandle } from '../atproto/syntax.js'
import { fetchBounded } from '../net/http-fetch.js'
import { assertPublicUrl, createGuardedDispatcher, RESERVED_TLDS, type AddressLookup, type HostPolicy } from '../net/net-guard.js'

/** TXT records of a name, each as its character-string chunks (as `dns.resolveTxt` returns them). */
export type TxtLookup = (name: string) => Promise<string[][]>

export interface HandleResolverOptions {
  /** Development: `localhost:<port>` handles over http, `.test` TLD, loopback addresses. */
  allowInsecure?: boolean
  /** A function or a `dns.promises.Resolver`; default: a resolver with a 3 s timeout. */
  txtLookup?: TxtLookup | dns.promises.Resolver
  /** Address lookup for the HTTPS method (default: system DNS). */
  lookup?: AddressLookup
  /** Per method (default 10 s). */
  timeoutMs?: number
  maxRedirects?: number
  /** Shares a guarded dispatcher; one is created when absent. */
  dispatcher?: Dispatcher
}

export type HandleResolution =
  | { did: string; method: 'dns' | 'https' }
  | { did: null; error: string }

const MAX_BODY = 2048 // as indigo

export class HandleResolver {
  private readonly policy: HostPolicy
  private readonly txt: TxtLookup
  private readonly dispatcher: Dispatcher
  private readonly ownsDispatcher: boolean
  private readonly timeoutMs: number
  private readonly maxRedirects: number
  /** `.test` names exist in no public DNS: they are only looked up through injected resolvers (dev networks, tests). */
  private readonly testTldDns: boolean
  private readonly testTldHttps: boolean

  constructor(opts: HandleResolverOptions = {}) {
    this.testTldDns = opts.txtLookup !== undefined
    this.testTldHttps = opts.lookup !== undefined || opts.dispatcher !== undefined
    this.policy = { allowLoopback: opts.allowInsecure ?? false }
    this.timeoutMs = opts.timeoutMs ?? 10_000
    this.maxRedirects = opts.maxRedirects ?? 3
    const txt = opts.txtLookup ?? new dns.promises.Resolver({ timeout: 3_000, tries: 2 })
    this.txt = typeof txt === 'function' ? txt : (name) => txt.resolveTxt(name)
    this.ownsDispatcher = !opts.dispatcher
    this.dispatcher =
      opts.dispatcher ??
      // One request per handle: a single connection per origin.
      createGuardedDispatcher({ allowLoopback: this.policy.allowLoopback, responseTimeoutMs: this.timeoutMs, connectionsPerOrigin: 1, ...(opts.lookup ? { lookup: opts.lookup } : {}) })
  }

  /** Why `handle` cannot be resolved at all, or null when it may be tried. */
  checkHandle(handle: string): string | null {
    if (this.policy.allowLoopback && /^localhost:[0-9]{1,5}$/.test(handle)) return null
    if (!isValidHandle(handle)) return 'invalid handle syntax'
    const tld = handle.slice(handle.lastIndexOf('.') + 1)
    if (RESERVED_TLDS.has(tld)) return `reserved TLD .${tld}`
    if (tld === 'test' && !this.policy.allowLoopback) return '.test handles only resolve in development'
    return null
  }

  async resolve(input: string): Promise<HandleResolution> {
    const handle = input.toLowerCase()
    const invalid = this.checkHandle(handle)
    if (invalid) return { did: null, error: invalid }
    const devLocal = handle.startsWith('localhost:')
    // RFC 6761: a .test name is never in public DNS, so asking the system resolver would only leak queries.
    const testTld = handle.endsWith('.test')
    const noHttps = { kind: 'error', error: 'HTTPS: .test handles need a development resolver' } as const
    // Both methods in parallel; DNS wins when it answers.
    const httpsPromise = testTld && !this.testTldHttps ? Promise.resolve(noHttps) : this.resolveHttps(handle, devLocal)
    const dnsResult = devLocal || (testTld && !this.testTldDns) ? ({ kind: 'none' } as const) : await this.resolveDns(handle)
    if (dnsResult.kind === 'did' || dnsResult.kind === 'conflict') {
      // DNS decided; the HTTPS answer is left unread. resolveHttps reports failures as values,
      // so this catch only keeps a bug there from becoming an unhandled rejection.
      void httpsPromise.catch(() => undefined)
      return dnsResult.kind === 'did'
        ? { did: dnsResult.did, method: 'dns' }
        : { did: null, error: `conflicting DNS records for _atproto.${handle}` }
    }
    const https = await httpsPromise
    if (https.kind === 'did') return { did: https.did, method: 'https' }
    const dnsErr = dnsResult.kind === 'error' ? dnsResult.error : 'no DNS record'
    return { did: null, error: `${dnsErr}; ${https.error}` }
  }

  private async resolveDns(
    handle: string,
  ): Promise<{ kind: 'did'; did: string } | { kind: 'conflict' } | { kind: 'none' } | { kind: 'error'; error: string }> {
    let records: string[][]
    try {
      records = await this.txt(`_atproto.${handle}`)
    } catch (err) {
      const code = (err as { code?: string }).code
      if (code === 'ENOTFOUND' || code === 'ENODATA') return { kind: 'none' }
      return { kind: 'error', error: `DNS: ${code ?? (err as Error).message}` }
    }
    const dids = new Set<string>()
    for (const chunks of records) {
      const value = chunks.join('')
      if (!value.startsWith('did=')) continue
      const did = value.slice(4).trim()
      if (isValidDid(did)) dids.add(did)
    }
    if (dids.size > 1) return { kind: 'conflict' }
    const [did] = dids
    return did ? { kind: 'did', did } : { kind: 'none' }
  }

  private async resolveHttps(handle: string, devLocal: boolean): Promise<{ kind: 'did'; did: string } | { kind: 'error'; error: string }> {
    const url = `${devLocal ? 'http' : 'https'}://${handle}/.well-known/atproto-did`
    const policy = this.policy
    try {
      const res = await fetchBounded(url, {
        dispatcher: this.dispatcher,
        checkUrl: (u) => assertPublicUrl(u, policy),
        maxBytes: MAX_BODY,
        timeoutMs: this.timeoutMs,
        maxRedirects: this.maxRedirects,
      })
      if (res.status < 200 || res.status >= 300) return { kind: 'error', error: `HTTPS: status ${res.status}` }
      const did = res.body.toString('utf8').trim()
      if (!isValidDid(did)) return { kind: 'error', error: 'HTTPS: body is not a DID' }
      return { kind: 'did', did }
    } catch (err) {
      return { kind: 'error', error: `HTTPS: ${(err as Error).message}` }
    }
  }

  async close(): Promise<void> {
    if (this.ownsDispatcher) await this.dispatcher.close()
  }
}
