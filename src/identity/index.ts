/**
 * Builds the identity layer from flat options (what `relay.ts` wires from
 * configuration): DID resolver, handle resolver and the cached directory.
 */
import type { Logger } from 'pino'
import type { Registry } from 'prom-client'
import type { Storage } from '../storage/db.js'
import { IdentityDirectory } from './directory.js'
import { HandleResolver, type TxtLookup } from './handle.js'
import type { AddressLookup } from '../net/net-guard.js'
import type { RateLimit } from './rate-limit.js'
import { DidResolver } from './resolver.js'

export { IdentityDirectory, type IdentityDirectoryOptions, type HandleResolverLike } from './directory.js'
export { DidResolver, didMethod, webDidAuthority, type DidResolverLike, type DidResolverOptions } from './resolver.js'
export { HandleResolver, type HandleResolution, type HandleResolverOptions, type TxtLookup } from './handle.js'
export { parseDidDocument, parsePdsEndpoint, type IdentityResult, type IdentityStatus, type ResolvedIdentity, type FailedIdentity } from './did-doc.js'

export interface IdentityOptions {
  /** RELAY_PLC_URL */
  plcUrl: string
  /** RELAY_ALLOW_INSECURE_HOSTS: did:web:localhost%3A<port>, localhost handles, loopback addresses. */
  allowInsecure: boolean
  /** RELAY_IDENTITY_CACHE_SIZE */
  cacheSize: number
  /** RELAY_IDENTITY_TTL */
  goodTtlMs: number
  /** RELAY_IDENTITY_ERROR_TTL */
  errorTtlMs: number
  invalidHandleTtlMs?: number
  forceRefreshIntervalMs?: number
  /** Whole HTTP exchange per resolution (default 10 s). */
  timeoutMs?: number
  plcRate?: RateLimit
  webRate?: RateLimit
  storage?: Storage
  logger: Logger
  registry: Registry
  /** Tests: injected DNS. */
  lookup?: AddressLookup
  txtLookup?: TxtLookup
}

export interface Identity {
  directory: IdentityDirectory
  resolver: DidResolver
  handles: HandleResolver
  close(): Promise<void>
}

export function createIdentity(opts: IdentityOptions): Identity {
  const resolver = new DidResolver({
    plcUrl: opts.plcUrl,
    allowInsecure: opts.allowInsecure,
    ...(opts.timeoutMs !== undefined ? { timeoutMs: opts.timeoutMs } : {}),
    ...(opts.lookup ? { lookup: opts.lookup } : {}),
  })
  const handles = new HandleResolver({
    allowInsecure: opts.allowInsecure,
    ...(opts.timeoutMs !== undefined ? { timeoutMs: opts.timeoutMs } : {}),
    ...(opts.lookup ? { lookup: opts.lookup } : {}),
    ...(opts.txtLookup ? { txtLookup: opts.txtLookup } : {}),
  })
  const directory = new IdentityDirectory({
    resolver,
    handleResolver: handles,
    ...(opts.storage ? { storage: opts.storage } : {}),
    cacheSize: opts.cacheSize,
    goodTtlMs: opts.goodTtlMs,
    errorTtlMs: opts.errorTtlMs,
    ...(opts.invalidHandleTtlMs !== undefined ? { invalidHandleTtlMs: opts.invalidHandleTtlMs } : {}),
    ...(opts.forceRefreshIntervalMs !== undefined ? { forceRefreshIntervalMs: opts.forceRefreshIntervalMs } : {}),
    perTargetRate: { ...(opts.plcRate ? { plc: opts.plcRate } : {}), ...(opts.webRate ? { web: opts.webRate } : {}) },
    logger: opts.logger,
    registry: opts.registry,
  })
  return {
    directory,
    resolver,
    handles,
    async close() {
      await Promise.all([resolver.close(), handles.close()])
    },
  }
}
