/**
 * Every reason the relay drops an upstream event or refuses a frame, with its
 * meaning. This is the one list: verification, ingest, the crawler, the
 * `relay_events_dropped_total{reason}` metric, getHostStatus and the admin
 * page use it, and the table in docs/operations.md is checked against it
 * (test/foundation/drop-reasons.test.ts). Kebab-case throughout.
 *
 * It lives in the protocol core because verification produces most of these
 * and src/atproto depends on nothing else of ours.
 */
export const DROP_REASON_MEANINGS = {
  // Framing and decode limits (the crawler refuses the frame and ends the connection)
  'bad-frame': 'the frame or a body field is missing, malformed or of the wrong type',
  'text-frame': 'a WebSocket text message where a binary frame was expected',
  'too-big': 'a frame, blocks or ops over the protocol size limits',
  'too-deep': 'CBOR nested deeper than its decode limit (frame or block)',
  'too-many-items': 'CBOR with more items than its decode limit',
  // Stream order and transport (crawler)
  'seq-not-increasing': 'an upstream seq not above the previous one on the same connection',
  info: 'an #info frame: logged, never forwarded (counted so floods show)',
  'ingest-error': 'ingest threw while taking the event (a relay bug; logged)',
  // Message types
  'unknown-type': 'a message type the relay does not know',
  'removed-type': 'a type removed from the protocol (#handle, #migrate, #tombstone)',
  // Syntax and verification (src/atproto/verify.ts)
  'bad-syntax': 'a DID, TID, datetime or record path that is not valid',
  'bad-car': 'the blocks are not a well-formed CAR slice',
  'bad-block-hash': "a block whose bytes do not hash to its CID",
  'bad-commit': 'the commit block is missing or not a well-formed v3 commit',
  'repo-mismatch': "the event's repo is not the commit's DID",
  'rev-mismatch': "the event's rev is not the commit's rev",
  'future-rev': 'a rev more than the allowed skew ahead of now',
  'bad-signature': 'the commit signature does not verify against the current signing key',
  'bad-op': 'an op that is malformed or does not match the new tree (strict)',
  'missing-block': 'a block the checks need is not in the CAR slice (strict)',
  'inversion-mismatch': 'inverting the ops does not reproduce prevData (strict)',
  'missing-prevdata': 'prevData absent for an account the relay already has a head for (strict)',
  'bad-mst': 'a malformed MST node met by the forward check or inversion (strict)',
  'deprecated-flag': 'the deprecated rebase or tooBig flag is set',
  // Identity, authority and account state (ingest)
  duplicate: 'rev not newer than the stored head (routine, e.g. a replay)',
  'wrong-host': 'the DID document names another PDS than the host that sent it',
  'no-identity': 'the DID does not resolve to a usable identity',
  inactive: 'the account is not active upstream',
  takendown: 'the account is taken down by the relay operator',
  throttled: 'the host was over its account limit when the account was created',
  'internal-error': 'kept failing for a reason that is not the protocol (logged)',
} as const satisfies Record<string, string>

export type DropReason = keyof typeof DROP_REASON_MEANINGS

export const DROP_REASONS: readonly DropReason[] = Object.keys(DROP_REASON_MEANINGS) as DropReason[]

const KNOWN = new Set<string>(DROP_REASONS)

export function isDropReason(value: string): value is DropReason {
  return KNOWN.has(value)
}
