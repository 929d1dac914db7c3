// End-to-end: a real PLC and two real PDSes (test/peer/peer.mjs) crawled by the relay, the
// relay's firehose read by an independent consumer (@atproto/sync Firehose with commit
// authentication + a raw @ipld/dag-cbor reader, test/peer/consumer.mjs).
//
//  1. peer up; relay A in-process on a fresh Postgres database; requestCrawl for both PDSes;
//     consumer L1 on relay A from cursor 0; a raw tap on each PDS (what the PDSes emitted).
//  2. the scenario (test/peer/driver.mjs runScenario) runs; at checkpoint 'content' relay A is
//     stopped as soon as it forwards (L1's sockets close with 1001), the PDSes keep writing
//     while no relay runs, and at 'edits' relay B starts on the same database; L1 reconnects
//     to it with its last cursors (raw and verified readers each resume from their own: the
//     @atproto/sync Firehose ends silently on a clean close and never reconnects by itself).
//  3. before the migration's PLC operation changes bob's key, the relay and the consumer
//     catch up, so bob's old commits are verified with the key that signed them. The relay
//     also catches up before carol's deletion (it verifies handles through the PDS, which stops
//     serving a deleted account's handle) and before the old PDS deactivates bob after his
//     move (it learns of the move from the new PDS's #identity): what it concludes about a
//     handle or a host's authority then does not depend on how far behind it happens to be.
//  4. afterwards: a consumer from cursor 0 on relay B, and the sync queries against the PDSes.
//
// What the relay legitimately does not forward (each is derived from what the PDSes emitted,
// then the whole list is asserted in 'every expected event …'):
//  * SYNC_NOT_NEWER: a #sync whose rev is not newer than the account's head. The PDS emits one
//    after every createAccount and activateAccount with the rev of the commit it already sent;
//    the relay drops it as a duplicate (PROTOCOL §4.6: forward #sync only when its rev is newer).
//  * SYNC_OLD_COMMIT: after the migration the new PDS's #sync has a fresh body rev, but its CAR
//    holds the old PDS's commit (old rev, signed with the old key): the relay drops it
//    (rev-mismatch), as it must any #sync whose commit does not match the event.
//  * NOT_AUTHORITATIVE: events the old PDS emits for an account after the PLC operation moved
//    it away (its #account deactivated): the old PDS is no longer the account's host.
// And one allowance on the replay from cursor 0, not on the live stream:
//  * bob's commits from before the migration cannot be verified any more by a consumer that
//    replays them after the PLC now lists his new key: exactly those seqs fail in the verifying
//    reader of the cursor-0 consumer (its raw reader still gets every frame).
// And one in the sync queries: the PDS forgets a deleted account (RepoNotFound, not listed);
// the relay keeps the 'deleted' status the PDS announced and lists it with its last head.
//
// Debugging: E2E_LOG_LEVEL=debug keeps the relay's debug logs; E2E_DEBUG=1 prints them and the
// streams after the run. A timeout prints the relay's queues, metrics and log tail.
import fs from 'node:fs'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { Consumer, ConsumerState, RawFrame } from '../peer/consumer.mjs'
import type { ExpectedEvent, Expectations, PeerInfo, ScenarioResult } from '../peer/driver.mjs'
import { createPostgresDatabase } from '../helpers/db.js'
import { PEER_DIR, startPeer, type PeerProcess } from './peer-process.js'
import { memoryLogger } from '../helpers/memory-logger.js'
import { everyNameLoopback, startTestRelay } from '../helpers/relay.js'
import { waitUntil } from '../helpers/wait.js'
import type { Relay } from '../../src/relay.js'

type ConsumerModule = typeof import('../peer/consumer.mjs')
type DriverModule = typeof import('../peer/driver.mjs')
type CheckModule = typeof import('../peer/check.mjs')
type HandlesModule = typeof import('../peer/local-handles.mjs')

const ADMIN_PASSWORD = 'e2e-relay-admin'
const WAIT_MS = 30_000

const SYNC_NOT_NEWER = 'sync-not-newer'
const SYNC_OLD_COMMIT = 'sync-old-commit'
const NOT_AUTHORITATIVE = 'not-authoritative'

let consumerMod: ConsumerModule
let driver: DriverModule
let check: CheckModule
let handles: HandlesModule

let peerProc: PeerProcess | undefined
let peer: PeerInfo
let db: { url: string; drop: () => Promise<void> } | undefined
/** The running relay and its API base URL (http://127.0.0.1:<port>). */
interface TestRelay {
  relay: Relay
  url: string
}
let relay: TestRelay | undefined
let stopRelayA: Promise<void> | undefined
const { logger, log } = memoryLogger(process.env.E2E_LOG_LEVEL === 'debug' ? 'debug' : 'info')
/** Everything started here, stopped (bounded) in afterAll. */
const consumers: Consumer[] = []
/** Raw readers on each PDS's own firehose: what the PDSes emitted. */
let taps: Consumer[] = []

let scenario: ScenarioResult
/** L1 on relay A until the restart. */
let beforeRestart: { state: ConsumerState; rawCursor: number; firehoseCursor: number; firehoseEnded: boolean }
/** L1 again, on relay B: raw reader and verifying reader resumed from their own cursors. */
let afterRestartRaw: ConsumerState
let afterRestartFirehose: ConsumerState
/** The whole live stream as L1 saw it across the restart. */
let live: ConsumerState
/** A consumer from cursor 0 on relay B after the scenario. */
let replay: ConsumerState
let tapFrames: RawFrame[][] = []
const timings: Record<string, number> = {}

/** waitUntil with the relay's diagnostics in the failure message. */
const waitFor = (pred: () => boolean | Promise<boolean>, label: string, ms = WAIT_MS): Promise<void> =>
  waitUntil(pred, async () => `${label}\n${await diagnostics()}`, ms)

/** The relay's state for a failure message: its queues, pool, taps, relevant metrics and log tail. */
async function diagnostics(): Promise<string> {
  const lines = [`taps: ${JSON.stringify(taps.map((t) => ({ lastSeq: t.state.lastRawSeq, frames: t.state.frames.length, errors: t.state.rawErrors })))}`]
  if (relay) {
    const r = relay.relay
    lines.push(`relay: seq ${r.sequencer.currentSeq()}, ingest in flight ${r.ingest.inFlight}, queued ${r.ingest.queued}, sequencer queued ${r.sequencer.queuedEvents()}, db pool ${JSON.stringify(r.storage.poolStats())}`)
    const metrics = (await r.registry.metrics()).split('\n').filter((l) => /^(relay|atproto|identity)_/.test(l) && !/ 0$/.test(l))
    lines.push(...metrics.slice(0, 150))
  }
  lines.push('relay log (tail):', log.tail(60))
  return lines.join('\n')
}

async function bounded<T>(p: Promise<T>, ms: number, label: string): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<undefined>((resolve) => {
    timer = setTimeout(() => {
      console.warn(`e2e: ${label} did not finish within ${ms} ms`)
      resolve(undefined)
    }, ms)
  })
  try {
    return await Promise.race([p, timeout])
  } finally {
    clearTimeout(timer)
  }
}

function startConsumer(opts: Parameters<ConsumerModule['startConsumer']>[0]): Consumer {
  const c = consumerMod.startConsumer(opts)
  consumers.push(c)
  return c
}

function currentRelay(): TestRelay {
  if (!relay) throw new Error('no relay is running')
  return relay
}

async function relayStart(): Promise<TestRelay> {
  const pdsUrls = peer.pds.map((p) => p.url)
  const started = await startTestRelay({
    databaseUrl: db!.url,
    plcUrl: peer.plcUrl,
    env: { RELAY_ADMIN_PASSWORD: ADMIN_PASSWORD, RELAY_DB_POOL_SIZE: '5', LOG_LEVEL: 'info' },
    logger,
    // The dev PDSes serve their `.test` handles on /.well-known/atproto-did; the relay asks through its DNS TXT hook.
    handles: (handle) => handles.resolveHandleLocally(handle, pdsUrls),
    // Every name (localhost, and the `.test` handles' HTTPS method) resolves to loopback: never real DNS.
    addressLookup: everyNameLoopback,
    // Short reconnect backoff: a restarted relay reconnects to the PDSes at once.
    overrides: { backoff: { baseMs: 100, maxMs: 1_000 } },
  })
  relay = { relay: started, url: `http://127.0.0.1:${started.apiAddress.port}` }
  return relay
}

/** The relay has handled every event the PDSes emitted so far (its host cursors reached them). */
async function relayCaughtUp(expectSoFar: Expectations, label: string): Promise<void> {
  for (const [i, tap] of taps.entries()) {
    const want = expectSoFar.events.filter((e) => e.pds === i).length
    await waitFor(() => tap.state.frames.length >= want, `PDS ${i} tap: ${want} frames (${label})`)
  }
  await waitFor(async () => {
    const { hosts } = (await driver.xrpc(currentRelay().url, 'com.atproto.sync.listHosts')) as { hosts: Array<{ hostname: string; seq: number }> }
    return peer.pds.every((p, i) => (hosts.find((h) => h.hostname === p.hostname)?.seq ?? -1) >= taps[i]!.state.lastRawSeq)
  }, `relay host cursors to reach the PDSes (${label})`)
}

/** The consumer has received (raw) and verified (Firehose) everything the relay committed. */
async function consumerCaughtUp(c: Consumer, label: string, parts: { raw: boolean; firehose: boolean }): Promise<void> {
  const seq = currentRelay().relay.sequencer.currentSeq()
  if (parts.raw) await waitFor(() => c.state.lastRawSeq >= seq, `${label}: raw reader at seq ${seq}`)
  if (parts.firehose) await waitFor(() => (c.firehoseCursor() ?? -1) >= seq, `${label}: Firehose at seq ${seq}`)
}

beforeAll(async () => {
  // Fail loudly (never skip) when the peer's own dependencies are not installed.
  if (!fs.existsSync(path.join(PEER_DIR, 'node_modules', '@atproto', 'dev-env'))) {
    throw new Error(
      'test/peer/node_modules is missing: the e2e suite needs the real PDS and PLC. Install them with ' +
        '`bash test/peer/install.sh` (npm ci --prefix test/peer, 2-3 min) and run the tests again.',
    )
  }
  consumerMod = await import('../peer/consumer.mjs')
  driver = await import('../peer/driver.mjs')
  check = await import('../peer/check.mjs')
  handles = await import('../peer/local-handles.mjs')

  const t0 = Date.now()
  db = await createPostgresDatabase()
  peerProc = await startPeer()
  peer = peerProc.info
  timings.peerReadyMs = Date.now() - t0
  const pdsUrls = peer.pds.map((p) => p.url)
  taps = peer.pds.map((p) => startConsumer({ service: p.url, plcUrl: peer.plcUrl, startCursor: 0, firehose: false }))

  // 1. Relay A, told about both PDSes; L1 follows it from the start.
  const relayA = await relayStart()
  for (const p of peer.pds) await driver.requestCrawl(relayA.url, p.hostname)
  const l1 = startConsumer({ service: relayA.url, plcUrl: peer.plcUrl, startCursor: 0, handlePdsUrls: pdsUrls })
  let l2raw: Consumer | undefined
  let l2firehose: Consumer | undefined
  let expectSoFar: Expectations | undefined

  // 2. The scenario, with the relay restarted in the middle.
  const t1 = Date.now()
  scenario = await driver.runScenario(peer, {
    checkpoint: async (name, expectations) => {
      expectSoFar = expectations
      if (name === 'content') {
        // Stop relay A once it forwards events, while it may still be ingesting the rest: whatever
        // it acknowledged upstream must be in its log.
        await waitFor(() => l1.state.frames.length > 0, 'relay A to forward its first event')
        stopRelayA = relayA.relay.stop()
        await bounded(stopRelayA, 20_000, 'relay A stop')
        relay = undefined
        // Relay A closed L1's sockets (1001). Let L1's Firehose finish verifying what it received.
        await waitFor(() => l1.firehoseEnded() && l1.state.rawErrors.length > 0, 'L1 to see relay A close')
        let last = l1.firehoseCursor()
        let stableSince = Date.now()
        await waitFor(() => {
          const now = l1.firehoseCursor()
          if (now !== last) [last, stableSince] = [now, Date.now()]
          return (now ?? -1) >= l1.state.lastRawSeq || Date.now() - stableSince > 1_000
        }, 'L1 Firehose to finish')
        beforeRestart = {
          state: await l1.stop(),
          rawCursor: Math.max(l1.state.lastRawSeq, 0),
          firehoseCursor: l1.firehoseCursor() ?? 0,
          firehoseEnded: l1.firehoseEnded(),
        }
        timings.relayAStoppedAtMs = Date.now() - t0
      }
      if (name === 'edits') {
        // The PDSes wrote the 'edits' phase while no relay ran; relay B must fetch it from its host cursors.
        const relayB = await relayStart()
        timings.relayBStartedAtMs = Date.now() - t0
        l2raw = startConsumer({ service: relayB.url, plcUrl: peer.plcUrl, startCursor: beforeRestart.rawCursor, firehose: false })
        l2firehose = startConsumer({
          service: relayB.url,
          plcUrl: peer.plcUrl,
          startCursor: beforeRestart.firehoseCursor,
          handlePdsUrls: pdsUrls,
          raw: false,
        })
        await relayCaughtUp(expectations, 'relay B after the restart')
      }
      // The relay judges a handle (and a host's authority) when it handles the event: let it
      // catch up before the PDS stops serving carol's handle, and before the old PDS speaks
      // for bob after his move, so what it concludes does not depend on its lag.
      if (name === 'lifecycle' || name === 'migrated') await relayCaughtUp(expectations, `checkpoint ${name}`)
    },
    // 3. Before the PLC operation: relay and consumer have verified bob's commits with his old key.
    settle: async () => {
      await relayCaughtUp(expectSoFar!, 'before the PLC operation')
      await consumerCaughtUp(l2raw!, 'L1 (raw) before the PLC operation', { raw: true, firehose: false })
      await consumerCaughtUp(l2firehose!, 'L1 (Firehose) before the PLC operation', { raw: false, firehose: true })
    },
  })
  timings.scenarioMs = Date.now() - t1

  await relayCaughtUp(scenario.expect, 'end of scenario')
  await consumerCaughtUp(l2raw!, 'L1 (raw) at the end', { raw: true, firehose: false })
  await consumerCaughtUp(l2firehose!, 'L1 (Firehose) at the end', { raw: false, firehose: true })
  afterRestartRaw = await l2raw!.stop()
  afterRestartFirehose = await l2firehose!.stop()
  tapFrames = []
  for (const tap of taps) tapFrames.push((await tap.stop()).frames)

  // L1 across the restart, as one stream. Its one expected socket problem: relay A's shutdown.
  live = {
    frames: [...beforeRestart.state.frames, ...afterRestartRaw.frames],
    rawErrors: [...beforeRestart.state.rawErrors.filter((e) => !isShutdownClose(e)), ...afterRestartRaw.rawErrors],
    events: [...beforeRestart.state.events, ...afterRestartFirehose.events],
    errors: [...beforeRestart.state.errors, ...afterRestartFirehose.errors],
    lastRawSeq: afterRestartRaw.lastRawSeq,
  }

  // 4. A newcomer from cursor 0 gets the whole history from relay B.
  const t2 = Date.now()
  const fromZero = startConsumer({ service: currentRelay().url, plcUrl: peer.plcUrl, startCursor: 0, handlePdsUrls: pdsUrls })
  await waitFor(() => fromZero.state.lastRawSeq >= live.lastRawSeq && fromZero.caughtUp(), 'the cursor-0 consumer to catch up')
  replay = await fromZero.stop()
  timings.replayMs = Date.now() - t2
}, 200_000)

afterAll(async () => {
  for (const c of consumers) await bounded(c.stop(), 5_000, 'consumer stop')
  if (stopRelayA) await bounded(stopRelayA, 10_000, 'relay A stop')
  if (relay) await bounded(relay.relay.stop(), 15_000, 'relay stop')
  if (peerProc) await peerProc.stop()
  if (db) await db.drop()
  console.info(`e2e relay timings: ${JSON.stringify(timings)}`)
  if (process.env.E2E_DEBUG) {
    console.info(log.lines.filter((l) => !l.includes('"system":"firehose"')).join(''))
    const f = (x: RawFrame) => `${x.seq} ${x.type} ${x.did?.slice(-5)} ${x.ops?.length ?? ''} ${x.status ?? ''}`
    console.info('accounts', Object.entries(scenario?.accounts ?? {}).map(([k, v]) => `${k}=${v.did.slice(-5)}`).join(' '))
    console.info('L1 before', beforeRestart?.state.frames.map(f).join(' | '), beforeRestart?.rawCursor, beforeRestart?.firehoseCursor)
    console.info('L1 after', afterRestartRaw?.frames.map(f).join(' | '))
    for (const [i, t] of tapFrames.entries()) console.info('PDS', i, t.map(f).join(' | '))
  }
}, 60_000)

function isShutdownClose(e: { reason: string; message: string }): boolean {
  return e.reason === 'closed' && e.message.includes('code 1001')
}

/** What the relay should forward, per account: the scenario's expectations minus the documented drops. */
function relayExpectations(): { byDid: Map<string, ExpectedEvent[]>; dropped: Array<{ e: ExpectedEvent; reason: string }> } {
  const byDid = new Map<string, ExpectedEvent[]>()
  const dropped: Array<{ e: ExpectedEvent; reason: string }> = []
  const seen = new Map<string, number>()
  /** The PDS frame behind an expected event: the k-th of its type for its DID on its PDS. */
  const frameOf = (e: ExpectedEvent): RawFrame => {
    const key = `${e.pds} ${e.did} ${e.type}`
    const k = seen.get(key) ?? 0
    seen.set(key, k + 1)
    const f = tapFrames[e.pds]!.filter((x) => x.did === e.did && x.type === e.type)[k]
    if (!f) throw new Error(`PDS ${e.pds} never emitted the expected ${e.type} #${k} for ${e.did}`)
    return f
  }
  for (const [did, events] of scenario.expect.merged()) {
    const migration = scenario.migrated.find((m) => m.did === did)
    let movedAway = false
    let head: string | undefined
    const kept: ExpectedEvent[] = []
    for (const e of events) {
      const f = frameOf(e)
      // submitPlcOperation's #identity on the new PDS: from here on the PLC names the new PDS.
      if (migration && e.pds === migration.to && e.type === '#identity' && e.handle === null) movedAway = true
      if (migration && movedAway && e.pds === migration.from) {
        dropped.push({ e, reason: NOT_AUTHORITATIVE })
      } else if (e.type === '#sync' && f.commitRev !== f.rev) {
        dropped.push({ e, reason: SYNC_OLD_COMMIT })
      } else if (e.type === '#sync' && head !== undefined && f.rev! <= head) {
        dropped.push({ e, reason: SYNC_NOT_NEWER })
      } else {
        kept.push(e)
        if (e.type === '#commit' || e.type === '#sync') head = f.rev
      }
    }
    byDid.set(did, kept)
  }
  return { byDid, dropped }
}

describe('relay end to end: real PDSes and PLC, independent verifying consumer', () => {
  it('the live stream across the restart: every frame decodes, seqs strictly increase, every commit verifies', () => {
    expect(live.frames.length).toBeGreaterThan(0)
    // The only socket problem L1 had: relay A shutting down (close 1001) at the restart.
    expect(beforeRestart.state.rawErrors.map((e) => e.message)).toEqual(['socket closed unexpectedly (code 1001)'])
    // Zero validation errors; every raw frame has its verified counterpart and vice versa.
    expect(check.checkConsumerState(live)).toEqual([])
    expect(live.errors).toEqual([])
    expect(live.rawErrors).toEqual([])
    const seqs = live.frames.map((f) => f.seq)
    expect(seqs.every((s, i) => typeof s === 'number' && (i === 0 || s > seqs[i - 1]!))).toBe(true)
  })

  it('every expected event, per account, in order; nothing but the documented drops is missing', () => {
    const { byDid, dropped } = relayExpectations()
    expect(check.compareExpected(live.frames, byDid)).toEqual([])
    const names = new Map(Object.entries(scenario.accounts).map(([name, a]) => [a.did, name]))
    const summary = dropped.map(({ e, reason }) => `${names.get(e.did)} ${e.type} from PDS ${e.pds}: ${reason}`).sort()
    expect(summary).toEqual(
      [
        // createAccount's #sync repeats the genesis commit's rev
        `alice #sync from PDS 0: ${SYNC_NOT_NEWER}`,
        `bob #sync from PDS 0: ${SYNC_NOT_NEWER}`,
        `carol #sync from PDS 1: ${SYNC_NOT_NEWER}`,
        `dave #sync from PDS 1: ${SYNC_NOT_NEWER}`,
        // activateAccount's #sync repeats the head's rev
        `bob #sync from PDS 0: ${SYNC_NOT_NEWER}`,
        // the migration
        `bob #sync from PDS 1: ${SYNC_OLD_COMMIT}`,
        `bob #account from PDS 0: ${NOT_AUTHORITATIVE}`,
      ].sort(),
    )
    // The relay emitted nothing beyond the expectations (compareExpected checks per account; this in total).
    const kept = [...byDid.values()].reduce((n, list) => n + list.length, 0)
    expect(live.frames.length).toBe(kept)
  })

  it('the relay forwarded every kind of event, op and account status, with verified handles', () => {
    const kinds = check.countBy(live.events, 'event')
    for (const k of ['create', 'update', 'delete', 'identity', 'account']) expect(kinds[k], k).toBeGreaterThan(0)
    const statuses = new Set(live.frames.filter((f) => f.type === '#account').map((f) => f.status ?? 'active'))
    expect([...statuses].sort()).toEqual(['active', 'deactivated', 'deleted', 'takendown'])
    expect(live.frames.some((f) => f.type === '#commit' && f.ops?.length === 3)).toBe(true) // applyWrites batch
    // Handles survive the relay's bidirectional check, including carol's new one.
    expect(live.frames.some((f) => f.type === '#identity' && f.handle === scenario.accounts.carol.handle)).toBe(true)
    const alice = scenario.accounts.alice
    expect(live.events.find((e) => e.event === 'identity' && e.did === alice.did)?.handle).toBe(alice.handle)
  })

  it('the restart: relay B resumed the host cursors, and L1 resumed from its last cursor with no gap and no duplicate', () => {
    const lastBefore = beforeRestart.rawCursor
    expect(beforeRestart.firehoseEnded).toBe(true)
    // Both sides of the restart carried events.
    expect(beforeRestart.state.frames.length).toBeGreaterThan(0)
    expect(afterRestartRaw.frames.length).toBeGreaterThan(0)
    expect(afterRestartRaw.frames[0]!.seq!).toBeGreaterThan(lastBefore)
    // Exactly the relay's whole log, once each: the live seqs equal the replay's seqs.
    expect(live.frames.map((f) => f.seq)).toEqual(replay.frames.map((f) => f.seq))
    // The verifying reader, resumed from its own cursor: each event exactly once.
    const before = new Set(beforeRestart.state.events.map((e) => e.seq))
    expect(afterRestartFirehose.events.filter((e) => before.has(e.seq))).toEqual([])
    expect(afterRestartFirehose.events.every((e) => e.seq > beforeRestart.firehoseCursor)).toBe(true)
    // Events the PDSes wrote while no relay ran ('edits' phase) came through relay B.
    const editsCommits = afterRestartRaw.frames.filter((f) => f.type === '#commit' && f.ops?.length === 3)
    expect(editsCommits.length).toBe(1)
  })

  it('a consumer from cursor 0 receives the whole history, byte-for-byte the same frames', () => {
    expect(replay.rawErrors).toEqual([])
    expect(replay.frames).toEqual(live.frames)
    // Its verifying reader checks everything except bob's commits from before the migration,
    // signed with the key the PLC no longer lists (see the header).
    const bob = scenario.accounts.bob.did
    const migratedAt = replay.frames.find((f) => f.did === bob && f.type === '#identity' && f.handle === undefined)?.seq
    expect(migratedAt).toBeDefined()
    const unverifiable = replay.frames
      .filter((f) => f.did === bob && f.type === '#commit' && (f.ops?.length ?? 0) > 0 && f.seq! < migratedAt!)
      .map((f) => f.seq)
    expect(unverifiable.length).toBeGreaterThan(0)
    expect([...new Set(replay.errors.map((e) => e.seq))].sort((a, b) => a! - b!)).toEqual(unverifiable)
    const unverifiableSeqs = new Set(unverifiable)
    const otherProblems = check
      .checkConsumerState(replay)
      .filter((p) => ![...unverifiableSeqs].some((s) => p.startsWith(`seq ${s}: commit ops`) || p.endsWith(`seq=${s}`)))
    expect(otherProblems).toEqual([])
  })

  it('getLatestCommit, getRepoStatus and listRepos agree with the PDSes; listHosts and getHostStatus count the accounts', async () => {
    const relayUrl = currentRelay().url
    const query = async (base: string, nsid: string, params: Record<string, string | number> = {}) => {
      try {
        return { ok: true as const, body: await driver.xrpc(base, nsid, { params }) }
      } catch (err) {
        if (!(err instanceof driver.XrpcError)) throw err
        return { ok: false as const, error: err.reason }
      }
    }
    // Each account's home is the PDS its DID document names now.
    const homeOf = async (did: string): Promise<number> => {
      const doc = (await (await fetch(`${peer.plcUrl}/${did}`)).json()) as { service: Array<{ serviceEndpoint: string }> }
      const i = peer.pds.findIndex((p) => p.url === doc.service[0]?.serviceEndpoint)
      expect(i, `${did}'s PDS`).toBeGreaterThanOrEqual(0)
      return i
    }
    const deleted = new Set(scenario.deleted)
    const pdsRepos = await Promise.all(
      peer.pds.map(async (p) => (await query(p.url, 'com.atproto.sync.listRepos', { limit: 1000 })).body as { repos: Array<{ did: string }> }),
    )
    const expectedRepos: unknown[] = []
    const hostedBy = peer.pds.map(() => 0)
    for (const [name, { did }] of Object.entries(scenario.accounts)) {
      const home = peer.pds[await homeOf(did)]!
      for (const nsid of ['com.atproto.sync.getLatestCommit', 'com.atproto.sync.getRepoStatus']) {
        const fromRelay = await query(relayUrl, nsid, { did })
        const fromPds = await query(home.url, nsid, { did })
        if (deleted.has(did) && nsid.endsWith('getRepoStatus')) {
          // The PDS forgot the deleted account; the relay keeps the status the PDS announced.
          expect(fromPds, `${name} ${nsid} on its PDS`).toEqual({ ok: false, error: 'RepoNotFound' })
          expect(fromRelay, `${name} ${nsid} on the relay`).toEqual({ ok: true, body: { did, active: false, status: 'deleted' } })
        } else {
          expect(fromRelay, `${name} ${nsid}`).toEqual(fromPds)
        }
      }
      const listed = pdsRepos[peer.pds.indexOf(home)]!.repos.find((r) => r.did === did)
      if (deleted.has(did)) {
        expect(listed, `${name} in its PDS's listRepos`).toBeUndefined()
      } else {
        expect(listed, `${name} in its PDS's listRepos`).toBeDefined()
        expectedRepos.push(listed)
        hostedBy[peer.pds.indexOf(home)]!++
      }
    }
    // listRepos: each account as its home PDS lists it, plus the deleted one (the relay keeps its last head).
    const relayRepos = ((await query(relayUrl, 'com.atproto.sync.listRepos', { limit: 1000 })).body as { repos: Array<{ did: string }> }).repos
    const sortByDid = (list: unknown[]) => [...list].sort((a, b) => ((a as { did: string }).did < (b as { did: string }).did ? -1 : 1))
    expect(sortByDid(relayRepos.filter((r) => !deleted.has(r.did)))).toEqual(sortByDid(expectedRepos))
    expect(relayRepos.filter((r) => deleted.has(r.did)).map((r) => ({ ...r, head: undefined, rev: undefined }))).toEqual(
      scenario.deleted.map((did) => ({ did, head: undefined, rev: undefined, active: false, status: 'deleted' })),
    )
    expect(relayRepos.length).toBe(Object.keys(scenario.accounts).length)

    // Hosts: both active, cursor at the PDS's last seq, counting the live accounts each one hosts.
    const { hosts } = (await query(relayUrl, 'com.atproto.sync.listHosts')).body as {
      hosts: Array<{ hostname: string; seq: number; accountCount: number; status: string }>
    }
    expect(hosts.map((h) => h.hostname).sort()).toEqual(peer.pds.map((p) => p.hostname).sort())
    for (const [i, p] of peer.pds.entries()) {
      const want = { hostname: p.hostname, seq: tapFrames[i]!.at(-1)!.seq, accountCount: hostedBy[i], status: 'active' }
      expect(hosts.find((h) => h.hostname === p.hostname)).toEqual(want)
      const status = (await query(relayUrl, 'com.atproto.sync.getHostStatus', { hostname: p.hostname })).body as Record<string, unknown>
      expect({ hostname: status.hostname, seq: status.seq, accountCount: status.accountCount, status: status.status }).toEqual(want)
    }
    expect(hostedBy).toEqual([1, 2]) // alice on PDS 0; dave and bob (moved) on PDS 1; carol deleted
  })

  it('listReposByCollection agrees with each active account\'s describeRepo on its PDS', async () => {
    const relayUrl = currentRelay().url
    const homeOf = async (did: string) => {
      const doc = (await (await fetch(`${peer.plcUrl}/${did}`)).json()) as { service: Array<{ serviceEndpoint: string }> }
      return peer.pds.find((p) => p.url === doc.service[0]?.serviceEndpoint)!
    }
    const fromPds = new Map<string, string[]>()
    for (const { did } of Object.values(scenario.accounts)) {
      const status = (await driver.xrpc(relayUrl, 'com.atproto.sync.getRepoStatus', { params: { did } })) as { active: boolean }
      if (!status.active) continue
      const described = (await driver.xrpc((await homeOf(did)).url, 'com.atproto.repo.describeRepo', { params: { repo: did } })) as { collections: string[] }
      fromPds.set(did, [...described.collections].sort())
    }
    expect(fromPds.size).toBeGreaterThan(0)
    const collections = [...new Set([...fromPds.values()].flat())].sort()
    expect(collections.length).toBeGreaterThan(0)
    const fromRelay = new Map<string, string[]>([...fromPds.keys()].map((did) => [did, []]))
    for (const collection of collections) {
      const page = (await driver.xrpc(relayUrl, 'com.atproto.sync.listReposByCollection', { params: { collection, limit: 2000 } })) as { repos: { did: string }[] }
      for (const { did } of page.repos) {
        // Only active accounts are listed.
        expect(fromRelay.has(did), `${did} listed in ${collection}`).toBe(true)
        fromRelay.get(did)!.push(collection)
      }
    }
    expect(fromRelay).toEqual(fromPds)
  })
})
