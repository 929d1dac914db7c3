// Types for driver.mjs (hand-written; the peer package is plain JS).

export interface PeerInfo {
  ready: true
  plcUrl: string
  pds: Array<{ url: string; port: number; hostname: string; did: string }>
  adminPassword: string
  controlUrl: string
  tmpDir: string
}

export interface Account {
  did: string
  handle: string
  accessJwt: string
  refreshJwt: string
  email: string
  password: string
  /** index of the PDS the account lives on */
  pds: number
}

export interface ExpectedOp {
  action: 'create' | 'update' | 'delete'
  path: string
  cid: string | null
  prev?: string | null
}

export interface ExpectedEvent {
  step: number
  pds: number
  did: string
  type: '#identity' | '#account' | '#commit' | '#sync'
  handle?: string | null
  active?: boolean
  status?: string
  ops?: ExpectedOp[]
  rev?: string
  commit?: string
}

export declare class XrpcError extends Error {
  nsid: string
  status: number
  reason: string
}

export declare function xrpc(
  baseUrl: string,
  nsid: string,
  opts?: {
    params?: Record<string, string | number | boolean | undefined | Array<string | number>>
    body?: unknown
    auth?: string
    encoding?: string
    as?: 'json' | 'bytes'
    method?: 'GET' | 'POST'
  },
): Promise<any>

export declare function requestCrawl(relayUrl: string, hostname: string): Promise<unknown>
export declare function bearer(account: { accessJwt: string }): string
export declare function basicAdmin(password?: string): string

export declare class Expectations {
  events: ExpectedEvent[]
  step: number
  add(pds: number, did: string, type: ExpectedEvent['type'], fields?: Partial<ExpectedEvent>): void
  byDid(pds: number): Map<string, ExpectedEvent[]>
  merged(): Map<string, ExpectedEvent[]>
  count(pds?: number): Record<string, number>
}

export interface RecordRef {
  uri: string
  cid: string
  path: string
  rkey: string
  commit?: { cid: string; rev: string }
}

export interface WriteSpec {
  action: 'create' | 'update' | 'delete'
  collection: string
  rkey?: string
  value?: Record<string, unknown>
}

export declare class PdsDriver {
  constructor(opts: { url: string; index: number; adminPassword?: string; controlUrl?: string; expect?: Expectations })
  url: string
  index: number
  expect: Expectations
  createAccount(opts: { handle: string; email?: string; password?: string }): Promise<Account>
  createRecord(account: Account, collection: string, record: Record<string, unknown>, rkey?: string): Promise<RecordRef>
  putRecord(account: Account, collection: string, rkey: string, record: Record<string, unknown>): Promise<RecordRef>
  deleteRecord(account: Account, collection: string, rkey: string): Promise<unknown>
  applyWrites(account: Account, writes: WriteSpec[]): Promise<{ ops: ExpectedOp[]; commit?: { cid: string; rev: string } }>
  uploadBlob(account: Account, bytes?: Uint8Array, mimeType?: string): Promise<unknown>
  postWithImage(account: Account, text: string, bytes?: Uint8Array, mimeType?: string): Promise<RecordRef & { blob: unknown }>
  post(account: Account, text: string): Promise<RecordRef>
  like(account: Account, subject: { uri: string; cid: string }): Promise<RecordRef>
  follow(account: Account, did: string): Promise<RecordRef>
  updateHandle(account: Account, handle: string): Promise<void>
  deactivate(account: Account): Promise<void>
  activate(account: Account): Promise<void>
  takedown(did: string, applied?: boolean): Promise<void>
  deleteAccount(did: string): Promise<void>
  describeServer(): Promise<{ did: string; availableUserDomains: string[] }>
  getLatestCommit(did: string): Promise<{ cid: string; rev: string }>
  listRepos(): Promise<{ repos: Array<{ did: string; head: string; rev: string; active: boolean; status?: string }> }>
  mail(to: string): Promise<Array<{ template: string; to: string; token: string | null }>>
}

export declare function migrateAccount(
  from: PdsDriver,
  to: PdsDriver,
  account: Account,
  opts?: { settle?: () => Promise<void>; activated?: () => Promise<void> },
): Promise<{ account: Account; blobs: number; carBytes: number }>

export interface ScenarioResult {
  expect: Expectations
  accounts: { alice: Account; bob: Account; carol: Account; dave: Account }
  deleted: string[]
  migrated: Array<{ did: string; from: number; to: number }>
  migration: { blobs: number; carBytes: number }
  drivers: PdsDriver[]
}

export type ScenarioCheckpoint = 'accounts' | 'content' | 'edits' | 'lifecycle' | 'migrated'

export declare function runScenario(
  peer: PeerInfo,
  hooks?: { settle?: () => Promise<void>; checkpoint?: (name: ScenarioCheckpoint, expect: Expectations) => Promise<void> },
): Promise<ScenarioResult>
