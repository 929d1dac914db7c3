/**
 * A v1 subscriber's filter (`wantedCollections`, `wantedDids`,
 * `maxMessageSizeBytes`), from the query string or an `options_update`
 * payload, with Jetstream's limits. Checking a message is a Set lookup or two.
 * Pure: no I/O.
 */
import { isValidDid, isValidNsid } from '../atproto/syntax.js'
import { invalidRequest } from '../atproto/xrpc-error.js'
import { Params } from '../http/params.js'
import type { JetKind, JetMessage } from './event-messages.js'

export const MAX_WANTED_COLLECTIONS = 100
export const MAX_WANTED_DIDS = 10_000

/** `app.bsky.*`: NSID segments, then `.*`. */
const PREFIX = /^[a-zA-Z][a-zA-Z0-9-]*(\.[a-zA-Z0-9-]+)*\.\*$/

export interface FilterSpec {
  wantedCollections: readonly string[]
  wantedDids: readonly string[]
  maxMessageSizeBytes: number
  /** v2 `kinds`: unset or empty is every kind. */
  kinds?: readonly JetKind[]
}

export class JetFilter {
  private readonly collections: Set<string> | null
  private readonly prefixes: string[]
  readonly dids: Set<string> | null
  readonly maxMessageSizeBytes: number
  private readonly kinds: Set<JetKind> | null

  constructor(spec: FilterSpec) {
    const exact = new Set<string>()
    const prefixes: string[] = []
    for (const c of spec.wantedCollections) {
      if (c.endsWith('.*')) prefixes.push(c.slice(0, -1))
      else exact.add(c)
    }
    this.collections = exact.size > 0 || prefixes.length > 0 ? exact : null
    this.prefixes = prefixes
    this.dids = spec.wantedDids.length > 0 ? new Set(spec.wantedDids) : null
    this.maxMessageSizeBytes = spec.maxMessageSizeBytes
    this.kinds = spec.kinds !== undefined && spec.kinds.length > 0 ? new Set(spec.kinds) : null
  }

  static all(): JetFilter {
    return new JetFilter({ wantedCollections: [], wantedDids: [], maxMessageSizeBytes: 0 })
  }

  /** Whether any message of `did`'s events can pass (checked before the event is decoded). */
  wantsDid(did: string): boolean {
    return this.dids === null || this.dids.has(did)
  }

  /** Whether this message passes (its DID already passed wantsDid). Identity and account messages bypass the collection filter. */
  wants(m: JetMessage): boolean {
    if (this.maxMessageSizeBytes > 0 && m.json.length > this.maxMessageSizeBytes) return false
    if (this.kinds !== null && !this.kinds.has(m.kind)) return false
    if (this.collections === null || m.collection === null || m.collection === '') return true
    if (this.collections.has(m.collection)) return true
    for (const p of this.prefixes) if (m.collection.startsWith(p)) return true
    return false
  }
}

/** The filter in a `/subscribe` query string. Throws XrpcError (400) naming the bad parameter. */
export function filterFromQuery(params: Params): FilterSpec {
  return {
    wantedCollections: checkCollections(params.list('wantedCollections', 'string')),
    wantedDids: checkDids(params.list('wantedDids', 'string')),
    maxMessageSizeBytes: lenientSize(params.optional('maxMessageSizeBytes')),
  }
}

/** The filter in an `options_update` payload (a JSON object); absent fields are empty. Throws XrpcError on bad input. */
export function filterFromPayload(payload: unknown): FilterSpec {
  if (typeof payload !== 'object' || payload === null || Array.isArray(payload)) throw invalidRequest('options_update payload must be a JSON object')
  const p = payload as Record<string, unknown>
  const list = (name: string): string[] => {
    const v = p[name]
    if (v === undefined || v === null) return []
    if (!Array.isArray(v) || !v.every((x) => typeof x === 'string')) throw invalidRequest(`options_update ${name} must be an array of strings`)
    return v as string[]
  }
  const size = p.maxMessageSizeBytes
  return {
    wantedCollections: checkCollections(list('wantedCollections')),
    wantedDids: checkDids(list('wantedDids')),
    maxMessageSizeBytes: typeof size === 'number' && Number.isSafeInteger(size) && size > 0 ? size : 0,
  }
}

export function checkCollections(values: string[], name = 'wantedCollections'): string[] {
  const unique = [...new Set(values)]
  if (unique.length > MAX_WANTED_COLLECTIONS) throw invalidRequest(`${name} takes at most ${MAX_WANTED_COLLECTIONS} values, got ${unique.length}`)
  for (const c of unique) {
    if (c.length > 317 || !(isValidNsid(c) || PREFIX.test(c))) throw invalidRequest(`${name}: "${c.slice(0, 320)}" is neither an NSID nor a prefix such as app.bsky.*`)
  }
  return unique
}

export function checkDids(values: string[], name = 'wantedDids'): string[] {
  const unique = [...new Set(values)]
  if (unique.length > MAX_WANTED_DIDS) throw invalidRequest(`${name} takes at most ${MAX_WANTED_DIDS} values, got ${unique.length}`)
  for (const d of unique) if (d.length > 2048 || !isValidDid(d)) throw invalidRequest(`${name}: "${d.slice(0, 200)}" is not a DID`)
  return unique
}

/** Jetstream's rule: empty, malformed or negative means 0 (no cap). */
function lenientSize(raw: string | undefined): number {
  if (raw === undefined || !/^\d+$/.test(raw)) return 0
  const n = Number(raw)
  return Number.isSafeInteger(n) ? n : 0
}
