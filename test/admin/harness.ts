/**
 * A whole relay (in-process, fresh Postgres database) with fake PDS hosts, a
 * loopback PLC and real signed accounts, plus a firehose collector and an
 * admin API client: what the operator-surface tests drive.
 */
import WebSocket from 'ws'
import { decodeFrame } from '../../src/atproto/frame.js'
import type { Relay } from '../../src/relay.js'
import { createPostgresDatabase } from '../helpers/db.js'
import { FakePds } from '../helpers/fake-pds.js'
import { LoopbackPlc } from '../helpers/loopback-plc.js'
import { everyNameLoopback, TEST_ADMIN_PASSWORD, type TestRelayOptions } from '../helpers/relay.js'
import { TestAccount } from '../helpers/repo-builder.js'

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

export interface FirehoseEvent {
  seq: number
  t: string
  did: string
  body: Record<string, unknown>
}

const openClients = new Set<FirehoseClient>()

/** Closes this file's firehose clients, then stops the relay. */
export async function stopRelay(relay: Relay | undefined): Promise<void> {
  await Promise.all([...openClients].map((c) => c.close()))
  await relay?.stop()
}

/** A firehose consumer that decodes and keeps every frame. */
export class FirehoseClient {
  readonly events: FirehoseEvent[] = []
  readonly errors: string[] = []
  readonly opened: Promise<void>
  readonly closed: Promise<void>

  constructor(
    relay: Relay,
    opts: { cursor?: number; userAgent?: string } = {},
    readonly ws = new WebSocket(
      `ws://127.0.0.1:${relay.apiAddress.port}/xrpc/com.atproto.sync.subscribeRepos${opts.cursor === undefined ? '' : `?cursor=${opts.cursor}`}`,
      { perMessageDeflate: false, headers: { 'User-Agent': opts.userAgent ?? 'admin-test-consumer/1.0' } },
    ),
  ) {
    ws.on('message', (data: Buffer) => {
      const f = decodeFrame(new Uint8Array(data))
      if (f.op === 1) {
        const body = f.body as Record<string, unknown>
        const did = (body.did ?? body.repo) as string
        this.events.push({ seq: body.seq as number, t: f.t, did, body })
      } else this.errors.push(f.error)
    })
    ws.on('error', () => undefined)
    openClients.add(this)
    this.opened = new Promise((resolve, reject) => {
      ws.once('open', () => resolve())
      ws.once('error', reject)
    })
    this.closed = new Promise((resolve) =>
      ws.once('close', () => {
        openClients.delete(this)
        resolve()
      }),
    )
  }

  of(did: string, t?: string): FirehoseEvent[] {
    return this.events.filter((e) => e.did === did && (t === undefined || e.t === t))
  }

  close(): Promise<void> {
    if (this.ws.readyState !== WebSocket.CLOSED) this.ws.terminate()
    return this.closed
  }
}

/** Replays the firehose from `cursor` until it goes quiet for `quietMs`; returns what it got. */
export async function replay(relay: Relay, cursor = 0, quietMs = 300): Promise<FirehoseEvent[]> {
  const c = new FirehoseClient(relay, { cursor })
  await c.opened
  let last = -1
  for (let i = 0; i < 100 && last !== c.events.length; i++) {
    last = c.events.length
    await sleep(quietMs)
  }
  await c.close()
  return c.events
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

/** Polls `check` until it returns a truthy value (returned) or `timeoutMs` passes (throws with `what`). */
export async function waitFor<T>(what: string, check: () => T | Promise<T>, timeoutMs = 10_000): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs
  let lastError: unknown
  for (;;) {
    try {
      const v = await check()
      if (v) return v as NonNullable<T>
    } catch (err) {
      lastError = err
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${lastError ? `: ${String(lastError)}` : ''}`)
    await sleep(25)
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
