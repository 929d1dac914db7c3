/** Protocol size limits in one place (PROTOCOL.md §4.8). */

/** One WebSocket frame on the firehose, all overhead included. */
export { MAX_FRAME_BYTES } from './frame.js'
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
