export { Crawler, type CrawlerOptions, type HostConnectionStatus } from './crawler.js'
export { Admission, type AdmissionOptions, type AdmissionOutcome, type AdmissionResult, type HostLifecycle } from './admission.js'
export {
  HostConnection,
  type ConnectionInfo,
  type ConnectionState,
  type HoldReason,
  type HostConnectionOptions,
} from './host-connection.js'
export { USER_AGENT, isRelayServerHeader } from './upstream-dial.js'
export {
  parseHostname,
  HostnameError,
  TrustedDomains,
  banCandidates,
  findDomainBan,
  hostWithoutPort,
  type HostnameErrorReason,
  type ParsedHostname,
} from './hostname.js'
export { hostRateLimits, HostRateLimiter, SlidingWindow, type HostRateLimits, type RateLimitState } from './rate-limit.js'
export { describeServer, DescribeServerError } from './describe-server.js'
export { countConnectableHosts, HostWriteError, type HostWriteFailure } from './host-store.js'
export type { FutureCursorPolicy, HostCursorSource, IngestSink, UpstreamHost } from './types.js'
