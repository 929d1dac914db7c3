export { Firehose, SUBSCRIBE_REPOS_PATH, type FirehoseOptions, type ReplaySource, type CutOffReason } from './firehose.js'
export type { ConsumerInfo, ConsumerState } from './consumer.js'
export { FrameRing, wsFrame, wsFrameParts, type RingEntry } from './ring.js'
