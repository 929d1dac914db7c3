export { Sequencer, SEQ_STATE_KEY, type SequencerOptions } from './sequencer.js'
export {
  EventLog,
  EventLogError,
  DEFAULT_PARTITION_SIZE,
  DEFAULT_REPLAY_WINDOW_MS,
  type LoggedEvent,
  type PartitionInfo,
} from './event-log.js'
export { HostCursorTracker, UpstreamTicket, type DeferReason, type TicketState } from './host-cursors.js'
export {
  SequencerError,
  type AcceptedEvent,
  type AcceptedKind,
  type CommittedEvent,
  type CommittedEventSource,
  type SequencerErrorReason,
} from './types.js'
