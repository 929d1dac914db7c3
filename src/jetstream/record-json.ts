/**
 * A record block (DAG-CBOR) as atproto data-model JSON: CID links as
 * `{"$link": "…"}`, bytes as `{"$bytes": "<base64>"}` (the wrappers @atcute/cbor
 * decodes to serialise themselves that way). Records come from a host, so the
 * decode is bounded by the data-model limits first (src/atproto/cbor-scan.ts).
 * Pure: no I/O.
 */
import { decodeBounded } from '../atproto/cbor-scan.js'
import { SKIPPED_BODY_LIMITS } from '../atproto/limits.js'

/** The record's JSON text. Throws CborLimitError past the data-model bounds, or on malformed CBOR. */
export function recordJson(block: Uint8Array): string {
  return JSON.stringify(decodeBounded(block, SKIPPED_BODY_LIMITS, 'record'))
}
