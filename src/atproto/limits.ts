/** Protocol size limits in one place (PROTOCOL.md §4.8). */
import type { CborLimits } from './cbor-scan.js'

/** One WebSocket frame on the firehose, all overhead included (sync spec). */
export const MAX_FRAME_BYTES = 5_000_000
/** `#commit.blocks` (Lexicon maxLength). */
export const MAX_COMMIT_BLOCKS_BYTES = 2_000_000
/** `#sync.blocks` (Lexicon maxLength): the CAR holds only the signed commit. */
export const MAX_SYNC_BLOCKS_BYTES = 10_000
/** `#commit.ops` (Lexicon maxLength). */
export const MAX_COMMIT_OPS = 200
/** One record block. */
export const MAX_RECORD_BYTES = 1_000_000
/** How far a `rev` may be ahead of the local clock (indigo uses 5 minutes). */
export const MAX_FUTURE_REV_MS = 300_000

/*
 * Decode limits (cbor-scan.ts). Every generic CBOR decode of host bytes is
 * bounded by one of these; an item over a limit is dropped as `too-deep` or
 * `too-many-items`. Depth counts arrays, maps and tags (a CID link is a tag).
 */

/** A frame header is `{t, op}`: one map of two scalars. */
export const FRAME_HEADER_LIMITS: CborLimits = { maxDepth: 2, maxItems: 16 }

/**
 * Bodies the relay decodes (#commit, #sync, #identity, #account). Their
 * lexicons nest at most 4 deep (body → ops → op → cid link); 8 leaves room
 * for new optional fields. A #commit has ≤ 200 ops of ≤ 11 items plus a few
 * dozen top-level items (≈ 2,300); 8,192 also leaves room for the deprecated
 * `blobs` list.
 */
export const FRAME_BODY_LIMITS: CborLimits = { maxDepth: 8, maxItems: 8_192 }

/**
 * Bodies the relay never decodes (#info, unknown and removed types) are only
 * skip-scanned for framing, so the data-model bounds apply: nesting ≤ 32 and
 * a container length ≤ 131,072 (atproto data-validation guide, PROTOCOL.md
 * §3.1), here as a total. A scan costs well under a millisecond at that size.
 */
export const SKIPPED_BODY_LIMITS: CborLimits = { maxDepth: 32, maxItems: 131_072 }

/**
 * Blocks decoded generically: the repo commit object (6 fields, ≈ 13 items,
 * depth 2) and the CAR header (`{version, roots}`, depth 3). Data-model
 * nesting; far more items than either has. (Records are never decoded by the
 * relay; MST nodes go through their own layout-bound codec.)
 */
export const BLOCK_LIMITS: CborLimits = { maxDepth: 32, maxItems: 4_096 }
