/**
 * Hostnames of upstream hosts: what `requestCrawl` accepts, how it is stored,
 * which names are trusted and which are banned (DESIGN §7, ANCHOR-INDIGO §4.1).
 *
 * Stored form: lower-case DNS name without scheme, path or port; the only
 * exception is `localhost[:<port>]`, allowed in development
 * (RELAY_ALLOW_INSECURE_HOSTS) and always dialled over plain ws/http.
 */
import { isIP } from 'node:net'
import { sql, type Kysely } from 'kysely'
import { isDnsHostname, isLocalhostName, RESERVED_TLDS } from '../net/net-guard.js'
import type { Database } from '../storage/types.js'

export type HostnameErrorReason =
  | 'empty' // nothing given
  | 'scheme' // not https, wss, http or ws
  | 'path' // a path, query, fragment or credentials after the host
  | 'ip' // an IP literal: hosts are DNS names
  | 'syntax' // not a multi-label DNS name (single label, bad characters, too long)
  | 'reserved' // a TLD that never resolves publicly
  | 'port' // a port on anything but localhost
  | 'insecure' // plain ws/http, or localhost, without RELAY_ALLOW_INSECURE_HOSTS

export class HostnameError extends Error {
  override readonly name = 'HostnameError'
  constructor(
    readonly reason: HostnameErrorReason,
    message: string,
  ) {
    super(message)
  }
}

export interface ParsedHostname {
  /** Stored form: `pds.example.com`, or `localhost:2583` in development. */
  hostname: string
  /** true: wss/https; false: ws/http (localhost only). */
  ssl: boolean
}

export interface HostnameOptions {
  /** RELAY_ALLOW_INSECURE_HOSTS: `localhost[:port]` over plain ws/http. */
  allowInsecureHosts: boolean
}

const SCHEMES: Record<string, boolean> = { 'https:': true, 'wss:': true, 'http:': false, 'ws:': false }
const MAX_INPUT = 300

/**
 * Validates and normalises requestCrawl input such as `pds.example.com`,
 * `https://pds.example.com/` or `wss://pds.example.com`. Throws HostnameError.
 */
export function parseHostname(input: string, opts: HostnameOptions): ParsedHostname {
  const raw = input.trim()
  if (raw === '') throw new HostnameError('empty', 'hostname is empty')
  if (raw.length > MAX_INPUT) throw new HostnameError('syntax', 'hostname is too long')
  // Only ASCII: the URL parser would silently punycode anything else.
  if (!/^[\x21-\x7e]+$/.test(raw)) throw new HostnameError('syntax', 'hostname must be ASCII without spaces')
  const schemeMatch = /^([a-zA-Z][a-zA-Z0-9+.-]*):\/\//.exec(raw)
  const scheme = schemeMatch ? schemeMatch[1]!.toLowerCase() + ':' : undefined
  if (scheme !== undefined && !(scheme in SCHEMES)) {
    throw new HostnameError('scheme', `scheme ${scheme} not allowed: use https, wss or a bare hostname`)
  }
  let url: URL
  try {
    url = new URL(scheme === undefined ? `https://${raw}` : raw)
  } catch {
    throw new HostnameError('syntax', `cannot parse hostname ${JSON.stringify(raw)}`)
  }
  if (url.username || url.password) throw new HostnameError('path', 'credentials are not allowed in a hostname')
  if ((url.pathname !== '/' && url.pathname !== '') || url.search || url.hash || /[?#]/.test(raw)) {
    throw new HostnameError('path', 'give only the hostname, without a path or query')
  }
  let host = url.hostname.toLowerCase()
  if (host.endsWith('.')) host = host.slice(0, -1) // the fully-qualified form names the same host
  const bare = host.startsWith('[') ? host.slice(1, -1) : host
  if (isIP(bare)) throw new HostnameError('ip', `IP address ${bare} not allowed: a DNS hostname is required`)

  if (isLocalhostName(host)) {
    if (!opts.allowInsecureHosts) throw new HostnameError('insecure', `${host} is only allowed in development (RELAY_ALLOW_INSECURE_HOSTS)`)
    if (host !== 'localhost') throw new HostnameError('syntax', 'only plain localhost is allowed, not subdomains of it')
    // Development hosts are always plain ws/http: a test PDS has no certificate.
    return { hostname: url.port ? `localhost:${url.port}` : 'localhost', ssl: false }
  }
  if (!isDnsHostname(host)) throw new HostnameError('syntax', `${JSON.stringify(host)} is not a valid hostname (at least two labels of a-z, 0-9, -)`)
  const tld = host.slice(host.lastIndexOf('.') + 1)
  if (RESERVED_TLDS.has(tld) || (tld === 'test' && !opts.allowInsecureHosts)) {
    throw new HostnameError('reserved', `.${tld} names do not resolve on the public network`)
  }
  if (url.port) throw new HostnameError('port', `port ${url.port} not allowed: hosts are reached on 443`)
  if (scheme !== undefined && !SCHEMES[scheme]) {
    throw new HostnameError('insecure', `plain ${scheme.slice(0, -1)}:// is only allowed for localhost in development`)
  }
  return { hostname: host, ssl: true }
}

/** The host part without a port (`localhost:2583` → `localhost`). */
export function hostWithoutPort(hostname: string): string {
  const i = hostname.lastIndexOf(':')
  return i >= 0 ? hostname.slice(0, i) : hostname
}

/**
 * RELAY_TRUSTED_DOMAINS matching: exact names, and `*.suffix` patterns that
 * match any name below the suffix (not the suffix itself).
 */
export class TrustedDomains {
  private readonly exact = new Set<string>()
  private readonly suffixes: string[] = []

  constructor(patterns: readonly string[]) {
    for (const p of patterns) {
      const pattern = p.trim().toLowerCase()
      if (pattern === '') continue
      if (pattern.startsWith('*.')) this.suffixes.push(pattern.slice(1))
      else this.exact.add(pattern)
    }
  }

  matches(hostname: string): boolean {
    const host = hostWithoutPort(hostname.toLowerCase())
    return this.exact.has(host) || this.suffixes.some((s) => host.endsWith(s) && host.length > s.length)
  }
}

/** The hostname and every parent suffix: `a.b.com` → `a.b.com`, `b.com`, `com`. */
export function banCandidates(hostname: string): string[] {
  const labels = hostWithoutPort(hostname.toLowerCase()).split('.')
  return labels.map((_, i) => labels.slice(i).join('.'))
}

/** The `domain_ban` entry that covers `hostname` (itself or a parent suffix), or undefined. */
export async function findDomainBan(db: Kysely<Database>, hostname: string): Promise<string | undefined> {
  const candidates = banCandidates(hostname)
  const row = await db
    .selectFrom('domain_ban')
    .select('domain')
    .where(sql<string>`lower(domain)`, 'in', candidates)
    .orderBy(sql`length(domain)`, 'desc')
    .limit(1)
    .executeTakeFirst()
  return row?.domain
}
