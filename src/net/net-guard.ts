/**
 * SSRF and hostname rules for every outbound connection to a host the relay
 * did not choose itself (did:web documents, handle checks, PDS hosts).
 *
 * Two layers: `assertPublicHost` checks a hostname and port before anything is
 * sent, and `createGuardedDispatcher` checks the addresses DNS actually
 * returned, right before the socket connects, so DNS rebinding and redirects
 * to private names are refused too. Development mode (`allowLoopback`) admits
 * loopback addresses and `localhost:<port>`, nothing else private.
 */
import dns from 'node:dns'
import { isIP, isIPv4, isIPv6, type LookupFunction } from 'node:net'
import { createSecureContext, type SecureContext } from 'node:tls'
import { buildConnector, type Dispatcher } from 'undici'
import { withTimeout } from '../with-timeout.js'
import { OriginPools } from './origin-pools.js'

export type NetGuardReason =
  | 'forbidden_address' // private, loopback, link-local, multicast, reserved …
  | 'forbidden_port' // anything but 80/443, except localhost in development
  | 'invalid_hostname' // not a DNS name, or a reserved TLD
  | 'ip_literal' // a public IP literal where a DNS name is required
  | 'forbidden_scheme' // not http(s), or http outside development loopback
  | 'dns_failed' // the name did not resolve

export class NetGuardError extends Error {
  override readonly name = 'NetGuardError'
  constructor(
    readonly reason: NetGuardReason,
    message: string,
  ) {
    super(message)
  }
}

// ---------------------------------------------------------------- addresses

function parseIPv4(ip: string): number | null {
  if (!isIPv4(ip)) return null
  const parts = ip.split('.').map(Number)
  return (((parts[0]! << 24) | (parts[1]! << 16) | (parts[2]! << 8) | parts[3]!) >>> 0) as number
}

/** Eight 16-bit groups; a trailing dotted quad is folded into the last two. */
function parseIPv6(ip: string): number[] | null {
  if (!isIPv6(ip)) return null
  let s = ip.toLowerCase()
  const zone = s.indexOf('%')
  if (zone >= 0) s = s.slice(0, zone)
  const lastColon = s.lastIndexOf(':')
  const maybeV4 = s.slice(lastColon + 1)
  if (maybeV4.includes('.')) {
    // "…:1.2.3.4" → "…:102:304"
    const v4 = parseIPv4(maybeV4)
    if (v4 === null) return null
    s = s.slice(0, lastColon + 1) + (v4 >>> 16).toString(16) + ':' + (v4 & 0xffff).toString(16)
  }
  const [head = '', rest] = s.split('::') as [string, string | undefined]
  const headGroups = head === '' ? [] : head.split(':')
  const restGroups = rest === undefined || rest === '' ? [] : rest.split(':')
  const fill = rest === undefined ? 0 : 8 - headGroups.length - restGroups.length
  if (fill < 0) return null
  const groups = [...headGroups, ...new Array<string>(fill).fill('0'), ...restGroups].map((g) => parseInt(g, 16))
  return groups.length === 8 && groups.every((g) => Number.isInteger(g) && g >= 0 && g <= 0xffff) ? groups : null
}

const v4 = (a: number, b: number, c: number, d: number) => (((a << 24) | (b << 16) | (c << 8) | d) >>> 0) as number

/** IPv4 ranges that are not globally reachable (IANA special-purpose registry). */
const FORBIDDEN_V4: [number, number][] = [
  [v4(0, 0, 0, 0), 8], // "this network"
  [v4(10, 0, 0, 0), 8], // private
  [v4(100, 64, 0, 0), 10], // carrier-grade NAT
  [v4(127, 0, 0, 0), 8], // loopback
  [v4(169, 254, 0, 0), 16], // link-local (cloud metadata lives here)
  [v4(172, 16, 0, 0), 12], // private
  [v4(192, 0, 0, 0), 24], // IETF protocol assignments
  [v4(192, 0, 2, 0), 24], // documentation
  [v4(192, 88, 99, 0), 24], // 6to4 relay anycast
  [v4(192, 168, 0, 0), 16], // private
  [v4(198, 18, 0, 0), 15], // benchmarking
  [v4(198, 51, 100, 0), 24], // documentation
  [v4(203, 0, 113, 0), 24], // documentation
  [v4(224, 0, 0, 0), 4], // multicast
  [v4(240, 0, 0, 0), 4], // reserved and broadcast
]

function inV4Range(addr: number, [base, bits]: [number, number]): boolean {
  const mask = bits === 0 ? 0 : (~0 << (32 - bits)) >>> 0
  return ((addr & mask) >>> 0) === base
}

function isForbiddenV4(addr: number): boolean {
  return FORBIDDEN_V4.some((r) => inV4Range(addr, r))
}

function embeddedV4(g: number[], hiIndex: number): number {
  return ((g[hiIndex]! << 16) | g[hiIndex + 1]!) >>> 0
}

function isForbiddenV6(g: number[]): boolean {
  const zeroPrefix = (n: number) => g.slice(0, n).every((x) => x === 0)
  // ::ffff:a.b.c.d (IPv4-mapped): judge the IPv4 address
  if (zeroPrefix(5) && g[5] === 0xffff) return isForbiddenV4(embeddedV4(g, 6))
  // 64:ff9b::a.b.c.d (NAT64): judge the IPv4 address
  if (g[0] === 0x64 && g[1] === 0xff9b && g.slice(2, 6).every((x) => x === 0)) return isForbiddenV4(embeddedV4(g, 6))
  // Only global unicast (2000::/3) is public; this excludes ::, ::1, fc00::/7, fe80::/10, ff00::/8 …
  if ((g[0]! & 0xe000) !== 0x2000) return true
  if (g[0] === 0x2001 && g[1]! < 0x200) return true // 2001::/23 IETF assignments (Teredo, ORCHID, …)
  if (g[0] === 0x2001 && g[1] === 0xdb8) return true // documentation
  if ((g[0]! & 0xfff0) === 0x3ff0) return true // 3fff::/20 documentation
  if (g[0] === 0x2002) return isForbiddenV4(embeddedV4(g, 1)) // 6to4 carries an IPv4 address
  return false
}

/** True for any address a relay must never connect to on a stranger's say-so (loopback included). */
export function isForbiddenAddress(ip: string): boolean {
  const a4 = parseIPv4(ip)
  if (a4 !== null) return isForbiddenV4(a4)
  const g = parseIPv6(stripBrackets(ip))
  if (g === null) return true // not an address at all: never "public"
  return isForbiddenV6(g)
}

/** 127.0.0.0/8, ::1 and ::ffff:127.x — what development mode may reach. */
export function isLoopbackAddress(ip: string): boolean {
  const a4 = parseIPv4(ip)
  if (a4 !== null) return a4 >>> 24 === 127
  const g = parseIPv6(stripBrackets(ip))
  if (g === null) return false
  if (g.slice(0, 7).every((x) => x === 0) && g[7] === 1) return true
  return g.slice(0, 5).every((x) => x === 0) && g[5] === 0xffff && g[6]! >>> 8 === 127
}

function stripBrackets(host: string): string {
  return host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host
}

// ---------------------------------------------------------------- hostnames

/** TLDs that never resolve on the public network (`.test` only in development). */
export const RESERVED_TLDS = new Set(['alt', 'arpa', 'example', 'internal', 'invalid', 'local', 'localhost', 'onion'])

const LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/

/** A lower-case multi-label DNS name whose TLD starts with a letter. */
export function isDnsHostname(hostname: string): boolean {
  if (hostname.length === 0 || hostname.length > 253) return false
  const labels = hostname.split('.')
  if (labels.length < 2 || !labels.every((l) => LABEL.test(l))) return false
  return /^[a-z]/.test(labels[labels.length - 1]!)
}

export function isLocalhostName(hostname: string): boolean {
  return hostname === 'localhost' || hostname.endsWith('.localhost')
}

export interface HostPolicy {
  /** Development mode: loopback addresses, `localhost:<port>` and `.test` names are allowed. */
  allowLoopback: boolean
}

const STANDARD_PORTS = new Set([80, 443])

/**
 * Throws `NetGuardError` unless `hostname` (a DNS name, or a loopback literal in
 * development) on `port` (undefined = the scheme's default) may be contacted.
 * Runs before DNS; the dispatcher checks resolved addresses again.
 */
export function assertPublicHost(hostname: string, port: number | string | undefined | null, policy: HostPolicy): void {
  const host = stripBrackets(hostname.toLowerCase())
  const portNum = port === undefined || port === null || port === '' ? undefined : Number(port)
  if (portNum !== undefined && (!Number.isInteger(portNum) || portNum < 1 || portNum > 65535)) {
    throw new NetGuardError('forbidden_port', `invalid port ${String(port)}`)
  }
  let loopback = false
  if (isIP(host)) {
    if (policy.allowLoopback && isLoopbackAddress(host)) loopback = true
    else if (isForbiddenAddress(host)) throw new NetGuardError('forbidden_address', `address ${host} is not public`)
    else throw new NetGuardError('ip_literal', `IP literal ${host} not allowed; a DNS name is required`)
  } else if (isLocalhostName(host)) {
    if (!policy.allowLoopback) throw new NetGuardError('forbidden_address', `${host} is loopback`)
    loopback = true
  } else {
    if (!isDnsHostname(host)) throw new NetGuardError('invalid_hostname', `invalid hostname ${JSON.stringify(hostname)}`)
    const tld = host.slice(host.lastIndexOf('.') + 1)
    if (RESERVED_TLDS.has(tld) || (tld === 'test' && !policy.allowLoopback)) {
      throw new NetGuardError('invalid_hostname', `reserved TLD .${tld}`)
    }
  }
  if (portNum !== undefined && !STANDARD_PORTS.has(portNum) && !loopback) {
    throw new NetGuardError('forbidden_port', `port ${portNum} not allowed for ${host}`)
  }
}

/**
 * Checks a URL's scheme and host: https always; http only to loopback in
 * development (so `did:web:localhost%3A<port>` works in tests).
 */
export function assertPublicUrl(url: URL, policy: HostPolicy): void {
  if (url.protocol !== 'https:' && url.protocol !== 'http:') {
    throw new NetGuardError('forbidden_scheme', `scheme ${url.protocol} not allowed`)
  }
  if (url.username || url.password) throw new NetGuardError('invalid_hostname', 'credentials in URL not allowed')
  assertPublicHost(url.hostname, url.port, policy)
  if (url.protocol === 'http:' && !(policy.allowLoopback && isLoopbackHost(url.hostname))) {
    throw new NetGuardError('forbidden_scheme', `plain http to ${url.hostname} not allowed`)
  }
}

function isLoopbackHost(hostname: string): boolean {
  const host = stripBrackets(hostname.toLowerCase())
  return isIP(host) ? isLoopbackAddress(host) : isLocalhostName(host)
}

// ---------------------------------------------------------------- DNS + dialing

export interface ResolvedAddress {
  address: string
  family: number
}

/** Resolves a name to every address (injectable so tests never query real DNS). */
export type AddressLookup = (hostname: string) => Promise<ResolvedAddress[]>

export const systemAddressLookup: AddressLookup = (hostname) => dns.promises.lookup(hostname, { all: true, verbatim: true })

/** Throws unless every resolved address is allowed by the policy. */
export function assertAllowedAddresses(hostname: string, addresses: ResolvedAddress[], policy: HostPolicy): void {
  if (addresses.length === 0) throw new NetGuardError('dns_failed', `${hostname} has no addresses`)
  for (const { address } of addresses) {
    if (policy.allowLoopback && isLoopbackAddress(address)) continue
    // Any forbidden record refuses the name: a public site has no private records.
    if (isForbiddenAddress(address)) {
      throw new NetGuardError('forbidden_address', `${hostname} resolves to non-public address ${address}`)
    }
  }
}

/** Every address of `hostname` the policy allows; rejects with a `NetGuardError` otherwise. */
export async function resolveAllowedAddresses(hostname: string, policy: HostPolicy, lookup: AddressLookup = systemAddressLookup): Promise<ResolvedAddress[]> {
  let all: ResolvedAddress[]
  try {
    all = await lookup(hostname)
  } catch (err) {
    const code = (err as { code?: string }).code
    throw Object.assign(new NetGuardError('dns_failed', `DNS lookup of ${hostname} failed: ${code ?? String(err)}`), { code })
  }
  assertAllowedAddresses(hostname, all, policy)
  return all
}

/** A `net.connect` lookup callback answered from addresses already resolved and checked. */
function answerLookup(hostname: string, all: ResolvedAddress[], options: dns.LookupOptions, callback: (...args: unknown[]) => void): void {
  const family = options.family === 4 || options.family === 6 ? options.family : 0
  const addresses = family ? all.filter((a) => a.family === family) : all
  if (addresses.length === 0) {
    callback(new NetGuardError('dns_failed', `${hostname} has no IPv${family} addresses`))
    return
  }
  if (options.all) callback(null, addresses)
  else callback(null, addresses[0]!.address, addresses[0]!.family)
}

/**
 * A `net.connect` lookup function that refuses forbidden addresses after DNS
 * resolution, before any packet goes to them.
 */
export function createGuardedLookup(policy: HostPolicy, lookup: AddressLookup = systemAddressLookup): LookupFunction {
  return ((hostname: string, options: dns.LookupOptions, callback: (...args: unknown[]) => void) => {
    resolveAllowedAddresses(hostname, policy, lookup).then(
      (all) => answerLookup(hostname, all, options, callback),
      (err: unknown) => callback(err),
    )
  }) as LookupFunction
}

export interface GuardedDispatcherOptions extends HostPolicy {
  /** Address resolution; the system resolver when absent. */
  lookup?: AddressLookup
  connectTimeoutMs?: number
  /** Time to wait for response headers, and between body chunks. */
  responseTimeoutMs?: number
  /** Connections per origin (default 4); 1 for callers that send one request per name (handles, did:web). */
  connectionsPerOrigin?: number
}

/**
 * Origins a guarded dispatcher keeps a pool for at once (each ~22 KB of heap; one with no
 * connection left is dropped anyway): enough for every name being resolved at one time.
 */
const MAX_GUARDED_ORIGINS = 1_024

let secureContext: SecureContext | undefined

/**
 * One TLS context (default CAs and ciphers) for every guarded connection.
 * Without it each `tls.connect` builds its own, ~0.5 ms of CPU: handle checks
 * and did:web lookups open a new connection to a new host almost every time.
 */
function sharedSecureContext(): SecureContext {
  secureContext ??= createSecureContext()
  return secureContext
}

/**
 * An undici dispatcher that applies `assertPublicHost` to every connection it
 * opens (redirect hops included) and `createGuardedLookup` to the addresses.
 */
export function createGuardedDispatcher(opts: GuardedDispatcherOptions): Dispatcher {
  const policy: HostPolicy = { allowLoopback: opts.allowLoopback }
  const lookup = opts.lookup ?? systemAddressLookup
  const connectTimeoutMs = opts.connectTimeoutMs ?? 5_000
  // Addresses resolved and checked before the socket is made, for the connector's own lookup:
  // a name that does not resolve (or resolves to a forbidden address) then costs no TLS socket,
  // which is most of a failed handle check (~200 µs of CPU each before, ~70 after: bench/handle-check.bench.ts).
  const checked = new Map<string, ResolvedAddress[]>()
  const guardedLookup = createGuardedLookup(policy, lookup)
  const base = buildConnector({
    timeout: connectTimeoutMs,
    lookup: ((hostname: string, options: dns.LookupOptions, callback: (...args: unknown[]) => void) => {
      const all = checked.get(hostname)
      if (all === undefined) return guardedLookup(hostname, options, callback as never)
      checked.delete(hostname)
      answerLookup(hostname, all, options, callback)
    }) as LookupFunction,
    secureContext: sharedSecureContext(),
  } as buildConnector.BuildOptions)
  const connect: buildConnector.connector = (options, callback) => {
    try {
      assertPublicHost(options.hostname, options.port, policy)
    } catch (err) {
      callback(err as Error, null)
      return
    }
    // An IP literal is not looked up (assertPublicHost has judged it).
    if (isIP(stripBrackets(options.hostname))) {
      base(options, callback)
      return
    }
    const timedOut = () => new NetGuardError('dns_failed', `DNS lookup of ${options.hostname} timed out after ${connectTimeoutMs} ms`)
    withTimeout(resolveAllowedAddresses(options.hostname, policy, lookup), connectTimeoutMs, timedOut).then(
      (all) => {
        checked.set(options.hostname, all)
        base(options, (err, socket) => {
          // Not consumed when the connector failed before its lookup.
          if (checked.get(options.hostname) === all) checked.delete(options.hostname)
          if (err !== null) callback(err, null)
          else callback(null, socket)
        })
      },
      (err: Error) => callback(err, null),
    )
  }
  const responseTimeout = opts.responseTimeoutMs ?? 10_000
  return new OriginPools({
    pool: {
      connect,
      headersTimeout: responseTimeout,
      bodyTimeout: responseTimeout,
      // Strangers' hosts: keep few idle sockets for a short time.
      keepAliveTimeout: 4_000,
      connections: opts.connectionsPerOrigin ?? 4,
    },
    maxOrigins: MAX_GUARDED_ORIGINS,
  })
}

/** The first error in `err`'s `cause` chain (at most 5 deep) that `match` accepts: undici and ws wrap the real cause. */
export function findCause<T>(err: unknown, match: (e: unknown) => e is T): T | undefined {
  for (let e: unknown = err, depth = 0; e && depth < 5; e = (e as { cause?: unknown }).cause, depth++) {
    if (match(e)) return e
  }
  return undefined
}

/** The `NetGuardError` behind a failed connection, if the guard refused it. */
export function findNetGuardError(err: unknown): NetGuardError | undefined {
  return findCause(err, (e): e is NetGuardError => e instanceof NetGuardError)
}
