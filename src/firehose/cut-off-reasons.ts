/**
 * Why the relay closes a firehose consumer: the label values of
 * `relay_firehose_consumers_cut_off_total{reason}`, with their meanings
 * (the table in docs/operations.md is checked against this list). Kebab-case,
 * like the drop reasons.
 */
export const CUT_OFF_REASON_MEANINGS = {
  'too-slow': 'the consumer, once live, was more than RELAY_CONSUMER_MAX_LAG events behind and read below RELAY_CONSUMER_MIN_RATE for RELAY_CONSUMER_SLOW_WINDOW: ConsumerTooSlow',
  'future-cursor': 'the consumer asked for a cursor ahead of the newest seq: FutureCursor',
  unresponsive: 'the consumer did not answer pings',
  error: 'replaying the backlog to the consumer failed (logged)',
  shutdown: 'the relay is shutting down',
  'stream-reset': "a splitter's upstream reset or was switched, so its seqs went backwards (the consumer reconnects)",
} as const satisfies Record<string, string>

export type CutOffReason = keyof typeof CUT_OFF_REASON_MEANINGS

export const CUT_OFF_REASONS: readonly CutOffReason[] = Object.keys(CUT_OFF_REASON_MEANINGS) as CutOffReason[]
