/**
 * What the relay phases share: the fake host fleet (child process), a relay on
 * a fresh database torn down afterwards, and the samples and windows every
 * rate and CPU figure is computed from.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Relay } from '../../src/relay.js'
import { createPostgresDatabase } from '../../test/helpers/db.js'
import type { CorpusParams } from '../corpus/params.js'
import { startBenchRelay } from './relay-under-test.js'
import { ChildRpc } from './rpc.js'

export type Log = (message: string) => void

export interface FleetReady {
  /** the real PLC (@did-plc/server) holding the corpus DIDs */
  plcUrl: string
  /** the same documents served statically (what the relay resolves against; see static-plc.ts) */
  staticPlcUrl: string
  hosts: { hostname: string; wsUrl: string; frames: number }[]
  totalFrames: number
}

export async function startFleet(params: Partial<CorpusParams>, totalRate: number, log: Log): Promise<{ rpc: ChildRpc; ready: FleetReady }> {
  const rpc = await ChildRpc.start({ script: 'bench/suite/fleet-child.ts', args: [JSON.stringify({ params, totalRate })], log })
  return { rpc, ready: rpc.ready as unknown as FleetReady }
}

/** A relay on a fresh database of `kind`, with the fleet's PLC; everything is torn down after `fn`. */
export async function withRelay<T>(
  kind: 'postgres' | 'pglite',
  plcUrl: string,
  fn: (relay: Relay) => Promise<T>,
  plcLimit: 'default' | 'lifted' = 'lifted',
  env?: Record<string, string>,
): Promise<T> {
  const pgdb = kind === 'postgres' ? await createPostgresDatabase() : null
  const dataDir = kind === 'pglite' ? mkdtempSync(join(tmpdir(), 'atrelay-bench-pglite-')) : undefined
  let relay: Relay | undefined
  try {
    relay = await startBenchRelay({ ...(pgdb ? { databaseUrl: pgdb.url } : { dataDir }), plcUrl, plcLimit, ...(env ? { env } : {}) })
    return await fn(relay)
  } finally {
    await relay?.stop()
    await pgdb?.drop()
    if (dataDir) rmSync(dataDir, { recursive: true, force: true })
  }
}


export interface Sample {
  t: number
  /** events running / waiting in ingest, waiting in the sequencer */
  inFlight?: number
  queued?: number
  seqQueued?: number
  seq: number
  handled: number
  /** CPU seconds: the relay process (all threads), its main thread alone (machine.ts mainThreadCpu) */
  cpu: number
  mainCpu: number
  /** event-loop active time so far, ms (performance.eventLoopUtilization().active) */
  eluActiveMs: number
  machineBusy: number
  rss: number
  /** CPU seconds of this run's Postgres backends (Postgres only) */
  pgCpu?: number
}

export interface WindowStats {
  fromS: number
  toS: number
  events: number
  eventsPerSec: number
  /** relay process CPU cores used (CPU s / wall s) */
  relayCores: number
  /** all cores busy on the machine (everything: relay, Postgres, fleet, other users) */
  machineCores: number
  /** this database's Postgres backends, cores (Postgres only) */
  pgCores?: number
  /** relay process CPU per accepted event, µs */
  relayUsPerEvent?: number
  /** the relay's main thread (event loop): cores, CPU per accepted event (µs), event-loop utilisation (0–1) */
  mainCores?: number
  mainUsPerEvent?: number
  elu?: number
  /** event-loop utilisation × window ÷ events, µs: the main thread's busy time, including time it was runnable but off CPU */
  eluUsPerEvent?: number
  /** every other thread of the relay process (verify workers, libuv pool, V8 helpers) = process − main thread, µs per event */
  otherThreadsUsPerEvent?: number
  /** Postgres backend CPU per accepted event, µs */
  pgUsPerEvent?: number
}

/** Rates and CPU between two samples (CPU per event is per accepted event: seq growth). */
export function windowBetween(samples: Sample[], a: Sample, b: Sample): WindowStats {
  void samples
  const dt = b.t - a.t
  const events = b.seq - a.seq
  const w: WindowStats = {
    fromS: a.t,
    toS: b.t,
    events,
    eventsPerSec: dt > 0 ? events / dt : 0,
    relayCores: dt > 0 ? (b.cpu - a.cpu) / dt : 0,
    machineCores: dt > 0 ? (b.machineBusy - a.machineBusy) / dt : 0,
    relayUsPerEvent: events > 0 ? ((b.cpu - a.cpu) * 1e6) / events : NaN,
  }
  if (Number.isFinite(a.mainCpu) && Number.isFinite(b.mainCpu)) {
    const main = b.mainCpu - a.mainCpu
    w.mainCores = dt > 0 ? main / dt : 0
    w.mainUsPerEvent = events > 0 ? (main * 1e6) / events : NaN
    w.otherThreadsUsPerEvent = events > 0 ? ((b.cpu - a.cpu - main) * 1e6) / events : NaN
  }
  const activeMs = b.eluActiveMs - a.eluActiveMs
  w.elu = dt > 0 ? activeMs / 1000 / dt : 0
  w.eluUsPerEvent = events > 0 ? (activeMs * 1000) / events : NaN
  if (a.pgCpu !== undefined && b.pgCpu !== undefined) {
    w.pgCores = dt > 0 ? (b.pgCpu - a.pgCpu) / dt : 0
    w.pgUsPerEvent = events > 0 ? ((b.pgCpu - a.pgCpu) * 1e6) / events : NaN
  }
  return w
}

