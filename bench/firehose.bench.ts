/**
 * Firehose benchmark (`npm run bench:firehose`):
 *   1. sequencer commit throughput with ~4.5 KB frames on local Postgres (target >= 8,000 events/s)
 *   2. fan-out server CPU per consumer per event, clients in a child process (target <= 2 µs), and
 *      the same publishing with no consumer (the bench's own publishing loop and framing, included
 *      in the figure above), so the part that grows with consumers shows
 *   3. replay rate from the log to one consumer (target >= 20,000 events/s)
 * Creates and drops its own database. Env: BENCH_DATABASE_URL (admin URL, default
 * postgres://postgres@127.0.0.1:5432/postgres), BENCH_EVENTS, BENCH_CONSUMERS, BENCH_FANOUT_SECONDS,
 * BENCH_FANOUT_RATE (events/s published during the fan-out run, default 2,000).
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { encode, toBytes } from '@atcute/cbor'
import pg from 'pg'
import pino from 'pino'
import { Registry } from 'prom-client'
import WebSocket from 'ws'
import { frameWithSeq } from '../src/atproto/frame.js'
import { Firehose } from '../src/firehose/firehose.js'
import { Sequencer } from '../src/sequencer/sequencer.js'
import type { AcceptedEvent, CommittedEvent, CommittedEventSource } from '../src/sequencer/types.js'
import { openStorage, type Storage } from '../src/storage/db.js'
import { migrate } from '../src/storage/migrate.js'

const SELF = fileURLToPath(import.meta.url)
const logger = pino({ level: 'silent' })
const FRAME_TARGET = 4469 // a real #commit frame (HOT-PATH.md)

// ---------------------------------------------------------------- parent
async function main(): Promise<void> {
  const adminUrl = process.env.BENCH_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres'
  const events = Number(process.env.BENCH_EVENTS ?? 40_000)
  const consumers = Number(process.env.BENCH_CONSUMERS ?? 50)
  const fanoutSeconds = Number(process.env.BENCH_FANOUT_SECONDS ?? 5)
  const fanoutRate = Number(process.env.BENCH_FANOUT_RATE ?? 2000)
  const name = 'atrelay_bench_' + randomBytes(5).toString('hex')
  await admin(adminUrl, `create database ${name}`)
  const u = new URL(adminUrl)
  u.pathname = '/' + name
  const storage = await openStorage({ dataDir: '', databaseUrl: u.toString(), poolSize: 8 })
  const results: Record<string, string> = {}
  try {
    await migrate(storage)
    const { sequencer, rate } = await benchSequencer(storage, events)
    results['sequencer commit'] = `${fmt(rate)} events/s (${events} events, ~${FRAME_TARGET} B frames, target >= 8,000)`
    const replay = await benchReplay(sequencer, events)
    results['replay from log'] = `${fmt(replay)} events/s to one consumer (target >= 20,000)`
    await sequencer.stop()
    for (const size of [FRAME_TARGET, 1024]) {
      const fan = await benchFanout(consumers, fanoutSeconds, size, fanoutRate)
      results[`fan-out ${size} B`] =
        `${fan.cpuPerMsg.toFixed(2)} µs server CPU per consumer per event (${fan.userPerMsg.toFixed(2)} user + ${fan.systemPerMsg.toFixed(2)} kernel; ${consumers} consumers, ` +
        `${fmt(fan.delivered)} msgs/s delivered, ${fmt(fan.eventsPerSec)} events/s published, target <= 2 µs)`
      const idle = await benchFanout(0, fanoutSeconds, size, fanoutRate)
      const idlePerMsg = idle.cpuPerEvent / consumers
      results[`  no consumer ${size} B`] =
        `${idlePerMsg.toFixed(2)} µs (the same publishing with no consumer: ${idle.cpuPerEvent.toFixed(1)} µs per event ÷ ${consumers}); ` +
        `per consumer beyond it ${(fan.cpuPerMsg - idlePerMsg).toFixed(2)} µs`
    }
  } finally {
    await storage.close()
    await admin(adminUrl, `drop database if exists ${name} with (force)`)
  }
  console.log('\nfirehose benchmark (node ' + process.version + ')')
  for (const [k, v] of Object.entries(results)) console.log(`  ${k.padEnd(20)} ${v}`)
}

async function admin(url: string, query: string): Promise<void> {
  const c = new pg.Client({ connectionString: url })
  await c.connect()
  try {
    await c.query(query)
  } finally {
    await c.end()
  }
}

function fmt(n: number): string {
  return Math.round(n).toLocaleString('en-US')
}

/** A #commit-like body whose frame is about `frameSize` bytes. */
function bodyOfFrameSize(did: string, revStr: string, frameSize: number): Uint8Array {
  const make = (pad: number) =>
    encode({
      seq: 0,
      repo: did,
      rev: revStr,
      since: null,
      blocks: toBytes(randomBytes(pad)),
      ops: [],
      time: new Date().toISOString(),
      tooBig: false,
      rebase: false,
    })
  const probe = frameWithSeq('#commit', make(frameSize), 1).length - frameSize
  return make(Math.max(1, frameSize - probe))
}

async function benchSequencer(storage: Storage, n: number): Promise<{ sequencer: Sequencer; rate: number }> {
  const host = await storage.db.insertInto('host').values({ hostname: 'bench.example.com', account_limit: 1e6 }).returning('id').executeTakeFirstOrThrow()
  const nAccounts = 1000
  const accounts = await storage.db
    .insertInto('account')
    .values(Array.from({ length: nAccounts }, (_, i) => ({ did: `did:plc:bench${i}`, host_id: host.id })))
    .returning('id')
    .execute()
  const template: AcceptedEvent[] = accounts.map((a, i) => ({
    accountId: a.id,
    did: `did:plc:bench${i}`,
    kind: 'commit',
    t: '#commit',
    body: bodyOfFrameSize(`did:plc:bench${i}`, '3kabcdefghi22', FRAME_TARGET),
    head: { rev: '3kabcdefghi22', commitCid: randomBytes(36), dataCid: randomBytes(36) },
  }))
  const sequencer = new Sequencer({ storage, initialSeq: 1, retentionIntervalMs: 0, logger, registry: new Registry() })
  await sequencer.start()
  const IN_FLIGHT = 4000
  let submitted = 0
  let done = 0
  const started = performance.now()
  await new Promise<void>((resolve, reject) => {
    const pump = () => {
      while (submitted < n && submitted - done < IN_FLIGHT) {
        const evt = template[submitted % nAccounts]!
        submitted++
        sequencer.submit({ ...evt, ticket: sequencer.openTicket(host.id, submitted) }).then(() => {
          if (++done === n) resolve()
          else if (submitted < n && submitted - done < IN_FLIGHT / 2) pump()
        }, reject)
      }
    }
    pump()
  })
  const rate = n / ((performance.now() - started) / 1000)
  return { sequencer, rate }
}

async function listen(firehose: Firehose): Promise<{ server: Server; url: string }> {
  const server = createServer((_q, r) => r.end())
  server.on('upgrade', (req, socket, head) => firehose.handleUpgrade(req, socket, head))
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return { server, url: `ws://127.0.0.1:${(server.address() as AddressInfo).port}/xrpc/com.atproto.sync.subscribeRepos` }
}

class ClientProcess {
  private readonly child: ChildProcess
  private readonly lines: string[] = []
  private waiter: (() => void) | undefined

  constructor(url: string, n: number) {
    this.child = spawn(process.execPath, ['--import', 'tsx', SELF, 'clients', url, String(n)], { stdio: ['pipe', 'pipe', 'inherit'] })
    createInterface({ input: this.child.stdout! }).on('line', (line) => {
      this.lines.push(line)
      this.waiter?.()
    })
  }

  private async next(prefix: string): Promise<string> {
    for (;;) {
      const i = this.lines.findIndex((l) => l.startsWith(prefix))
      if (i >= 0) return this.lines.splice(i, 1)[0]!
      await new Promise<void>((resolve) => (this.waiter = resolve))
    }
  }

  opened(): Promise<string> {
    return this.next('open')
  }

  async count(): Promise<number> {
    this.child.stdin!.write('count\n')
    return Number((await this.next('count ')).split(' ')[1])
  }

  exit(): void {
    this.child.stdin!.write('exit\n')
  }
}

async function benchReplay(sequencer: Sequencer, n: number): Promise<number> {
  // A fresh firehose has an empty ring: everything comes from the log.
  const firehose = new Firehose({ sequencer, eventLog: sequencer.eventLog, maxConsumerLag: 1e9, logger, registry: new Registry() })
  const { server, url } = await listen(firehose)
  const started = performance.now()
  const clients = new ClientProcess(`${url}?cursor=0`, 1)
  await clients.opened()
  let got = 0
  while (got < n) {
    await new Promise((r) => setTimeout(r, 20))
    got = await clients.count()
  }
  const rate = n / ((performance.now() - started) / 1000)
  clients.exit()
  await firehose.close()
  server.close()
  return rate
}

/** A stand-in for the sequencer that publishes pre-built frames at a fixed rate. */
class SyntheticSource implements CommittedEventSource {
  private listener: ((e: CommittedEvent[]) => void) | undefined
  seq = 0
  onCommitted(listener: (e: CommittedEvent[]) => void): () => void {
    this.listener = listener
    return () => (this.listener = undefined)
  }
  currentSeq(): number {
    return this.seq
  }
  publish(bodies: Uint8Array[], count: number): void {
    const events: CommittedEvent[] = []
    for (let i = 0; i < count; i++) {
      const seq = ++this.seq
      events.push({ seq, timeUs: seq, accountId: 1, did: 'did:plc:bench', kind: 1, t: '#commit', frame: frameWithSeq('#commit', bodies[seq % bodies.length]!, seq) })
    }
    this.listener?.(events)
  }
}

async function benchFanout(consumers: number, seconds: number, frameSize: number, rate: number) {
  const source = new SyntheticSource()
  const registry = new Registry()
  const firehose = new Firehose({ sequencer: source, eventLog: { readRange: async () => [], oldestSeq: async () => undefined }, maxConsumerLag: 1e9, logger, registry })
  const { server, url } = await listen(firehose)
  const clients = new ClientProcess(url, consumers)
  if (consumers > 0) await clients.opened()
  const bodies = Array.from({ length: 64 }, (_, i) => bodyOfFrameSize(`did:plc:bench${i}`, '3kabcdefghi22', frameSize))
  // Publish at a fixed rate (the network peaks near 2,000 events/s), in small batches as a sequencer would.
  const run = async (ms: number) => {
    const start = performance.now()
    const end = start + ms
    let published = 0
    while (performance.now() < end) {
      const due = Math.floor(((performance.now() - start) / 1000) * rate) - published
      if (due > 0) {
        source.publish(bodies, due)
        published += due
      }
      await new Promise((r) => setTimeout(r, 2))
    }
  }
  await run(1000) // warm-up
  const sentMetric = registry.getSingleMetric('relay_firehose_events_sent_total')!
  const sent0 = (await sentMetric.get()).values[0]?.value ?? 0
  const seq0 = source.seq
  const got0 = await clients.count()
  const cpu0 = process.cpuUsage()
  const t0 = performance.now()
  await run(seconds * 1000)
  const cpu = process.cpuUsage(cpu0)
  const elapsed = (performance.now() - t0) / 1000
  const sent = ((await sentMetric.get()).values[0]?.value ?? 0) - sent0
  const got = (await clients.count()) - got0
  clients.exit()
  await firehose.close()
  server.close()
  return {
    cpuPerEvent: (cpu.user + cpu.system) / (source.seq - seq0),
    cpuPerMsg: (cpu.user + cpu.system) / sent,
    userPerMsg: cpu.user / sent,
    systemPerMsg: cpu.system / sent,
    delivered: got / elapsed,
    eventsPerSec: (source.seq - seq0) / elapsed,
  }
}

// ---------------------------------------------------------------- child: clients
function runClients(): void {
  const [, , , url, nArg] = process.argv
  const n = Number(nArg)
  let received = 0
  let bytes = 0
  const sockets: WebSocket[] = []
  let open = 0
  for (let i = 0; i < n; i++) {
    const ws = new WebSocket(url!, { perMessageDeflate: false })
    ws.on('message', (data: Buffer) => {
      received++
      bytes += data.length
    })
    ws.on('open', () => {
      if (++open === n) process.stdout.write('open\n')
    })
    ws.on('error', (err) => process.stderr.write(`client error ${String(err)}\n`))
    sockets.push(ws)
  }
  createInterface({ input: process.stdin }).on('line', (line) => {
    if (line === 'count') process.stdout.write(`count ${received} ${bytes}\n`)
    if (line === 'exit') {
      for (const ws of sockets) ws.terminate()
      process.exit(0)
    }
  })
}


// Classes above must be initialised before either role runs.
if (process.argv[2] === 'clients') runClients()
else await main()
