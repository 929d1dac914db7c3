/**
 * A whole relay (in-process, fresh Postgres database) with fake PDS hosts, a
 * loopback PLC and real signed accounts, plus a firehose collector and an
 * admin API client: what the operator-surface tests drive.
 */
import type { Relay } from '../../src/relay.js'
import { createPostgresDatabase } from '../helpers/db.js'
import { FakePds } from '../helpers/fake-pds.js'
import { FirehoseClient, type FirehoseEvent } from '../helpers/firehose-client.js'
import { LoopbackPlc } from '../helpers/loopback-plc.js'
import { everyNameLoopback, TEST_ADMIN_PASSWORD, type TestRelayOptions } from '../helpers/relay.js'
import { TestAccount } from '../helpers/repo-builder.js'
import { waitFor, waitUntil } from '../helpers/wait.js'

/** The test relays' admin password (the harness's default). */
export const ADMIN_PASSWORD = TEST_ADMIN_PASSWORD

export const apiUrl = (relay: Relay) => `http://127.0.0.1:${relay.apiAddress.port}`
export const metricsUrl = (relay: Relay) => `http://127.0.0.1:${relay.metricsAddress.port}/metrics`
export const basic = (password: string, user = 'admin') => 'Basic ' + Buffer.from(`${user}:${password}`).toString('base64')

let handles = 0

/** The shared pieces of a test file: PLC, a database, and the fake hosts started so far. */
export class World {
  readonly hosts: FakePds[] = []
  private constructor(
    readonly plc: LoopbackPlc,
    readonly databaseUrl: string,
    private readonly drop: () => Promise<void>,
  ) {}

  static async start(): Promise<World> {
    const plc = await LoopbackPlc.start()
    const db = await createPostgresDatabase()
    return new World(plc, db.url, db.drop)
  }

  /**
   * Options for startTestRelay (test/helpers/relay.ts) on this world's database and PLC; the fake
   * hosts' made-up names (pds.spam.test …) all resolve to loopback.
   */
  relayOptions(more: Partial<TestRelayOptions> = {}): TestRelayOptions {
    return { databaseUrl: this.databaseUrl, plcUrl: this.plc.url, addressLookup: everyNameLoopback, ...more }
  }

  async host(): Promise<FakePds> {
    const pds = await FakePds.start()
    this.hosts.push(pds)
    return pds
  }

  /** `n` accounts whose DID documents name `pds`, registered with the PLC (not yet published). */
  async accounts(pds: FakePds, n: number): Promise<TestAccount[]> {
    const out: TestAccount[] = []
    for (let i = 0; i < n; i++) {
      // A reserved TLD: the relay refuses to resolve such handles at once, so no DNS query leaves the machine.
      const account = await TestAccount.create({ pdsUrl: pds.url, handle: `u${++handles}-${process.pid}.example` })
      await this.plc.register(account)
      out.push(account)
    }
    return out
  }

  async close(): Promise<void> {
    for (const h of this.hosts) await h.close()
    await this.plc.close()
    await this.drop()
  }
}

/** Publishes every account's creation events (#identity, #account, genesis #commit, #sync) on `pds`. */
export async function publishGenesis(pds: FakePds, accounts: TestAccount[]): Promise<void> {
  for (const a of accounts) pds.publish(...(await a.genesis()))
}

/** Closes this file's firehose clients, then stops the relay. */
export async function stopRelay(relay: Relay | undefined): Promise<void> {
  await FirehoseClient.closeAll()
  await relay?.stop()
}

/** Replays the firehose from `cursor` up to the log's newest event at the time of the call; returns what it got. */
export async function replay(relay: Relay, cursor = 0): Promise<FirehoseEvent[]> {
  const newest = (await relay.sequencer.eventLog.newestSeq()) ?? 0
  const c = await FirehoseClient.connect(relay, cursor, { userAgent: 'admin-test-consumer/1.0' })
  try {
    await waitUntil(() => (c.seqs().at(-1) ?? cursor) >= newest, () => `replay from ${cursor} to reach seq ${newest} (at ${c.seqs().at(-1)})`, 20_000)
    return c.events.filter((e) => e.seq <= newest)
  } finally {
    await c.close()
  }
}

/** JSON call to the relay; `auth` null sends no credentials. */
export async function call(
  relay: Relay,
  path: string,
  opts: { body?: unknown; auth?: string | null; method?: string } = {},
): Promise<{ status: number; body: Record<string, unknown>; headers: Headers }> {
  const auth = opts.auth === undefined ? basic(ADMIN_PASSWORD) : opts.auth
  const res = await fetch(`${apiUrl(relay)}${path}`, {
    method: opts.method ?? (opts.body === undefined ? 'GET' : 'POST'),
    headers: {
      ...(auth ? { Authorization: auth } : {}),
      ...(opts.body !== undefined ? { 'Content-Type': 'application/json' } : {}),
    },
    ...(opts.body !== undefined ? { body: JSON.stringify(opts.body) } : {}),
  })
  const text = await res.text()
  let body: Record<string, unknown> = {}
  try {
    body = text ? (JSON.parse(text) as Record<string, unknown>) : {}
  } catch {
    body = { text }
  }
  return { status: res.status, body, headers: res.headers }
}

/** Admin API call that must succeed; returns the JSON body. */
export async function admin<T = Record<string, unknown>>(relay: Relay, path: string, body?: unknown): Promise<T> {
  const res = await call(relay, `/admin/api/${path}`, body === undefined ? {} : { body })
  if (res.status !== 200) throw new Error(`admin ${path}: ${res.status} ${JSON.stringify(res.body)}`)
  return res.body as T
}

export interface HostView {
  hostname: string
  status: string
  connected: boolean
  accountCount: number
  accountLimit: number
  throttledAccounts: number
  lenient: boolean | null
  cursor: number
  events: { received: number; accepted: number; dropped: Record<string, number> }
}

export async function hostView(relay: Relay, hostname: string): Promise<HostView | undefined> {
  const { hosts } = await admin<{ hosts: HostView[] }>(relay, 'hosts')
  return hosts.find((h) => h.hostname === hostname)
}

/** Admin-adds `pds` and waits until the relay is subscribed to it. */
export async function addHost(relay: Relay, pds: FakePds): Promise<void> {
  await admin(relay, 'hosts', { hostname: pds.hostname })
  await waitFor(`relay connected to ${pds.hostname}`, () => pds.openConnections > 0 && relay.crawler.connection(pds.hostname)?.state === 'open')
}
