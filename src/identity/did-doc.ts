/**
 * Extracts what a relay needs from a DID document (PROTOCOL §5.4): the
 * `#atproto` signing key, the `#atproto_pds` endpoint and the claimed handle.
 * Pure: no I/O. Accepts the current form (absolute ids, Multikey) and the
 * legacy form the reference PLC server still renders (relative ids,
 * Ecdsa…2019 types with raw keys).
 */
import { parseDidDocKey, type PublicKey } from '../atproto/keys.js'
import { isValidHandle } from '../atproto/syntax.js'

export type IdentityStatus = 'ok' | 'not_found' | 'no_key' | 'no_pds' | 'failed'

export interface ResolvedIdentity {
  status: 'ok'
  did: string
  signingKey: PublicKey
  /** Normalised origin: scheme://host[:port], no trailing slash. */
  pdsEndpoint: string
  /** hostname[:port], lower-case: what the relay compares with the upstream host. */
  pdsHost: string
  /** The first valid `at://` claim, lower-case; not verified. */
  handle: string | null
}

export interface FailedIdentity {
  status: 'not_found' | 'no_key' | 'no_pds' | 'failed'
  did: string
  error: string
}

export type IdentityResult = ResolvedIdentity | FailedIdentity

export const PDS_SERVICE_TYPE = 'AtprotoPersonalDataServer'

type Json = Record<string, unknown>

function isObject(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

function arrayOf(v: unknown): unknown[] {
  return Array.isArray(v) ? v : []
}

/** `#frag` or `<did>#frag`. */
function idMatches(id: unknown, did: string, fragment: string): boolean {
  return id === `#${fragment}` || id === `${did}#${fragment}`
}

/** Parses a DID document fetched for `did` into a typed result; never throws. */
export function parseDidDocument(did: string, doc: unknown): IdentityResult {
  if (!isObject(doc)) return { status: 'failed', did, error: 'DID document is not a JSON object' }
  if (doc.id !== did) return { status: 'failed', did, error: `DID document id ${JSON.stringify(doc.id)} does not match` }

  const method = arrayOf(doc.verificationMethod).find(
    (m): m is Json => isObject(m) && idMatches(m.id, did, 'atproto'),
  )
  if (!method) return { status: 'no_key', did, error: 'no #atproto verification method' }
  if (method.controller !== did) return { status: 'no_key', did, error: '#atproto key controller is not the DID' }
  // Which key types are understood is parseDidDocKey's to say (Multikey and the two legacy types).
  if (typeof method.type !== 'string') return { status: 'no_key', did, error: '#atproto key has no type' }
  if (typeof method.publicKeyMultibase !== 'string') return { status: 'no_key', did, error: '#atproto key has no publicKeyMultibase' }
  let signingKey: PublicKey
  try {
    signingKey = parseDidDocKey(method.type, method.publicKeyMultibase)
  } catch (err) {
    return { status: 'no_key', did, error: `bad #atproto key: ${(err as Error).message}` }
  }

  const service = arrayOf(doc.service).find((s): s is Json => isObject(s) && idMatches(s.id, did, 'atproto_pds'))
  if (!service) return { status: 'no_pds', did, error: 'no #atproto_pds service' }
  if (service.type !== PDS_SERVICE_TYPE) return { status: 'no_pds', did, error: `#atproto_pds has type ${JSON.stringify(service.type)}` }
  const pds = typeof service.serviceEndpoint === 'string' ? parsePdsEndpoint(service.serviceEndpoint) : null
  if (!pds) return { status: 'no_pds', did, error: `invalid PDS endpoint ${JSON.stringify(service.serviceEndpoint)}` }

  return {
    status: 'ok',
    did,
    signingKey,
    pdsEndpoint: pds.endpoint,
    pdsHost: pds.host,
    handle: extractHandle(doc.alsoKnownAs),
  }
}

export interface PdsEndpoint {
  readonly endpoint: string
  readonly host: string
}

/**
 * Interned results: many DIDs share one PDS, and every cached identity holds
 * the endpoint and host strings, so one frozen pair per endpoint instead of
 * one per identity (and no URL parse per lookup). Bounded: cleared when full.
 */
const MAX_INTERNED_ENDPOINTS = 10_000
const endpointsByInput = new Map<string, PdsEndpoint | null>()
const endpointsByOrigin = new Map<string, PdsEndpoint>()

/** An http(s) URL with scheme, host and optional port only; null otherwise. */
export function parsePdsEndpoint(endpoint: string): PdsEndpoint | null {
  const known = endpointsByInput.get(endpoint)
  if (known !== undefined) return known
  const parsed = parseEndpointUrl(endpoint)
  if (endpointsByInput.size >= MAX_INTERNED_ENDPOINTS) {
    endpointsByInput.clear()
    endpointsByOrigin.clear()
  }
  let shared: PdsEndpoint | null = null
  if (parsed !== null) {
    shared = endpointsByOrigin.get(parsed.endpoint) ?? null
    if (shared === null || shared.host !== parsed.host) {
      shared = Object.freeze(parsed)
      endpointsByOrigin.set(parsed.endpoint, shared)
    }
  }
  endpointsByInput.set(endpoint, shared)
  return shared
}

function parseEndpointUrl(endpoint: string): PdsEndpoint | null {
  let url: URL
  try {
    url = new URL(endpoint)
  } catch {
    return null
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') return null
  if (url.username || url.password || url.search || url.hash || url.pathname !== '/') return null
  if (!url.hostname) return null
  return { endpoint: url.origin, host: url.host.toLowerCase() }
}

/** The first `at://` entry, if it is a valid handle (lower-cased); null otherwise. */
export function extractHandle(alsoKnownAs: unknown): string | null {
  const claim = arrayOf(alsoKnownAs).find((a): a is string => typeof a === 'string' && a.startsWith('at://'))
  if (!claim) return null
  const handle = claim.slice('at://'.length)
  return isValidHandle(handle) ? handle.toLowerCase() : null
}
