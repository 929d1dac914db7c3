/**
 * An account's public status as the relay reports it (#account, getRepoStatus,
 * listRepos): the relay's own (local, admin) status overrides what the host says
 * (upstream). Pure: shared by ingest, the query API and the admin surface.
 */

export type LocalStatus = 'active' | 'takendown' | 'throttled'
export type PublicStatus = 'takendown' | 'suspended' | 'deleted' | 'deactivated' | 'desynchronized' | 'throttled' | 'inactive'

export interface CombinedStatus {
  active: boolean
  /** absent when active */
  status?: PublicStatus
}

const KNOWN_UPSTREAM = new Set<string>(['takendown', 'suspended', 'deleted', 'deactivated', 'desynchronized', 'throttled', 'inactive'])

export function combinedStatus(local: string, upstream: string): CombinedStatus {
  if (local === 'takendown') return { active: false, status: 'takendown' }
  if (local === 'throttled') return { active: false, status: 'throttled' }
  if (upstream === 'active') return { active: true }
  return { active: false, status: KNOWN_UPSTREAM.has(upstream) ? (upstream as PublicStatus) : 'inactive' }
}

/** The upstream status an `#account` body declares: active, its status, or "inactive" when malformed. */
export function upstreamStatusOf(active: unknown, status: unknown): string {
  if (active === true) return 'active'
  return typeof status === 'string' && KNOWN_UPSTREAM.has(status) ? status : 'inactive'
}
