/**
 * Why the relay closes a Jetstream subscriber: the label values of
 * `relay_jetstream_cut_off_total{reason}`, with their meanings (the table in
 * docs/operations.md is checked against this list). Kebab-case, like the
 * firehose's cut-off reasons.
 */
export const JETSTREAM_CUT_OFF_REASON_MEANINGS = {
  'too-slow': 'the subscriber, once live, was more than RELAY_JETSTREAM_MAX_LAG events behind the newest seq and read below RELAY_CONSUMER_MIN_RATE for RELAY_CONSUMER_SLOW_WINDOW',
  'bad-hello': 'with requireHello, the first message was not a valid options_update',
  'no-hello': 'with requireHello, no options_update arrived within the hello deadline (30 s)',
  'bad-options': 'an options_update message was invalid (bad JSON, collections or DIDs, or over the limits)',
  'client-message': 'a subscribeEvents (v2) subscriber sent a data frame: that stream is server-push only',
  unresponsive: 'the subscriber did not answer pings',
  error: 'reading the event log for the subscriber failed (logged)',
  shutdown: 'the relay is shutting down',
  'stream-reset': "a splitter's upstream reset or was switched, so its seqs went backwards (the subscriber reconnects)",
} as const satisfies Record<string, string>

export type JetstreamCutOffReason = keyof typeof JETSTREAM_CUT_OFF_REASON_MEANINGS

export const JETSTREAM_CUT_OFF_REASONS: readonly JetstreamCutOffReason[] = Object.keys(JETSTREAM_CUT_OFF_REASON_MEANINGS) as JetstreamCutOffReason[]
