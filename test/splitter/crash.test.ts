/**
 * A real splitter process (`atrelay splitter`, spawned from the CLI) in front of an in-process
 * relay fed by a fake host: `kill -9` mid-stream and a restart lose and repeat nothing for a
 * consumer that reconnects with its cursor; then the relay restarts underneath and the
 * splitter resumes on its own. The relay's event table is the ground truth.
 */
import pg from 'pg'
import { afterAll, describe, expect, it } from 'vitest'
import type { Relay } from '../../src/relay.js'
import { spawnRelay, type RelayChild } from '../helpers/child.js'
import { createPostgresDatabase } from '../helpers/db.js'
import { LoopbackPlc } from '../helpers/loopback-plc.js'
import { freePort } from '../helpers/ports.js'
import { FirehoseClient, type FirehoseEvent } from '../helpers/firehose-client.js'
import { startTestRelay } from '../helpers/relay.js'
import { waitUntil } from '../helpers/wait.js'
import { Ledger, post, startHost, streamCommits } from '../relay/accounts.js'

const cleanups: (() => Promise<unknown>)[] = []
afterAll(async () => {
  for (const fn of cleanups.reverse()) await fn().catch(() => undefined)
})

async function splitterSeq(url: string): Promise<number> {
  const client = new pg.Client({ connectionString: url })
  await client.connect()
  try {
    const { rows } = await client.query<{ value: number }>("select value from relay_state where key = 'splitter_seq'")
    return Number(rows[0]?.value ?? 0)
  } finally {
    await client.end()
  }
}

const at = (port: number) => ({ apiAddress: { port, address: '127.0.0.1', family: 'IPv4' } })

describe('splitter process: kill -9 and restarts', () => {
  it('no gap and no duplicate across a kill -9 of the splitter; resumes after the relay restarts', async () => {
    const relayDb = await createPostgresDatabase()
    cleanups.push(() => relayDb.drop())
    const splitterDb = await createPostgresDatabase()
    cleanups.push(() => splitterDb.drop())
    const plc = await LoopbackPlc.start()
    cleanups.push(() => plc.close())
    const handles = new Map<string, string>()
    const ledger = new Ledger()
    const relayPort = await freePort()
    const relayEnv = { RELAY_API_LISTEN: `127.0.0.1:${relayPort}` }
    let relay: Relay = await startTestRelay({ databaseUrl: relayDb.url, plcUrl: plc.url, handles, env: relayEnv })
    cleanups.push(() => relay.stop())

    const splitPort = await freePort()
    const env = {
      DATABASE_URL: splitterDb.url,
      RELAY_API_LISTEN: `127.0.0.1:${splitPort}`,
      RELAY_METRICS_LISTEN: `127.0.0.1:${await freePort()}`,
    }
    const args = ['splitter', '--upstream', `http://127.0.0.1:${relayPort}`]
    const spawn = async (storedSeq: number): Promise<RelayChild> => {
      const child = spawnRelay(args, env)
      cleanups.push(async () => {
        child.proc.kill('SIGKILL')
        await child.exited
      })
      const listening = await child.waitFor((l) => l.msg === 'splitter listening', 90_000)
      // The start-up line: mode, upstream and the seq it resumes from.
      expect(listening).toMatchObject({ mode: 'splitter', upstream: `http://127.0.0.1:${relayPort}`, role: 'primary', seq: storedSeq })
      await child.waitFor((l) => l.msg === 'connected to the upstream relay', 60_000)
      return child
    }
    let child = await spawn(0)

    const first = await FirehoseClient.connect(at(splitPort), 0)
    cleanups.push(() => first.close())
    const host = await startHost(relay, plc, handles, ledger, { accounts: 3 })
    cleanups.push(() => host.pds.close())
    const stream = streamCommits(host, ledger, { intervalMs: 10, min: 80, mixed: true })
    await first.waitFor((ev) => ev.length >= 20, 'some events through the splitter', 60_000)

    child.proc.kill('SIGKILL')
    expect((await child.exited).signal).toBe('SIGKILL')
    await waitUntil(() => first.isClosed, 'the consumer to see the splitter die')
    const cursor = first.events.at(-1)!.seq
    const stored = await splitterSeq(splitterDb.url)
    // Every event a consumer got was committed first (and maybe a batch more).
    expect(stored).toBeGreaterThanOrEqual(cursor)
    child = await spawn(stored)
    const second = await FirehoseClient.connect(at(splitPort), cursor)
    cleanups.push(() => second.close())
    await stream.stop()
    await waitUntil(() => second.events.at(-1)?.seq === relay.sequencer.currentSeq(), 'the reconnected consumer to reach the relay head', 60_000)

    // The relay restarts underneath (same database, same address); the splitter redials by itself.
    await relay.stop()
    relay = await startTestRelay({ databaseUrl: relayDb.url, plcUrl: plc.url, handles, env: relayEnv })
    cleanups.push(() => relay.stop())
    await waitUntil(() => host.pds.openConnections === 1, 'the relay to resubscribe to the host')
    for (const account of host.accounts) ledger.publish(host.pds, await post(account))

    // Ground truth: every event the hosts published and the relay stored, exactly once, in order, under the relay's seqs.
    const combined = (): FirehoseEvent[] => [...first.events, ...second.events]
    await ledger.expectAllForwarded({ of: (did: string) => combined().filter((e) => e.did === did) }, 60_000)
    // The second child connected at its start and again after the relay restarted, each time from its cursor (never live).
    // Its log comes through a pipe and can trail the events it forwarded: wait for the line, with a deadline.
    const connectLines = () => child.lines.filter((l) => l.msg === 'connected to the upstream relay')
    await waitUntil(() => connectLines().length >= 2, 'the splitter logging its reconnect', 30_000)
    const connects = connectLines()
    expect(connects.length).toBeGreaterThanOrEqual(2)
    for (const l of connects) expect(typeof l.cursor, JSON.stringify(l)).toBe('number')
    const rows = await relay.storage.db.selectFrom('event').select('seq').orderBy('seq').execute()
    expect(combined().map((e) => e.seq)).toEqual(rows.map((r) => r.seq))
    expect(first.errors.filter((e) => !e.startsWith('socket:'))).toEqual([])
    expect(second.errors).toEqual([])
    const health = (await (await fetch(`http://127.0.0.1:${splitPort}/xrpc/_health`)).json()) as { upstream: { state: string; seq: number } }
    expect(health.upstream).toMatchObject({ state: 'open', seq: relay.sequencer.currentSeq() })
  }, 300_000)
})
