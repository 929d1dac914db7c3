export { Firehose, SUBSCRIBE_REPOS_PATH, type FirehoseOptions, type ReplaySource } from './firehose.js'
export { CUT_OFF_REASONS, CUT_OFF_REASON_MEANINGS, type CutOffReason } from './cut-off-reasons.js'
export type { ConsumerInfo, ConsumerState } from './consumer.js'
export { FrameRing, wsFrame, wsFrameParts, type RingEntry } from './ring.js'
