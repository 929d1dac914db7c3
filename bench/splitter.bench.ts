/**
 * Splitter benchmark (`npx tsx bench/splitter.bench.ts`): one upstream, one splitter process,
 * N consumers on the splitter at a fixed event rate.
 *
 *   upstream (this process): the relay's own Firehose over a synthetic committed-event source
 *     (no ingest: what a relay does per event for its one consumer, the splitter)
 *   splitter: `atrelay splitter --upstream …` spawned from the CLI, on its own Postgres database
 *   consumers: a child process of plain ws clients (live, no cursor)
 *
 * Reports, per consumer count: the splitter's CPU (from /proc, user + kernel) per event, the
 * marginal splitter CPU per consumer per event against the 0-consumer run, and the upstream's CPU
 * per event, which should not move with the consumer count.
 * Env: BENCH_DATABASE_URL (admin URL, default postgres://postgres@127.0.0.1:5432/postgres),
 * BENCH_CONSUMERS (default "0,50,200"), BENCH_RATE (events/s, default 1000), BENCH_SECONDS
 * (per run, default 8), BENCH_FRAME_BYTES (default 1024), BENCH_SPLITTER_NODE_ARGS (node flags for the splitter).
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { createServer } from 'node:http'
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
import type { CommittedEvent, CommittedEventSource } from '../src/sequencer/types.js'
import { freePort } from '../test/helpers/ports.js'

const SELF = fileURLToPath(import.meta.url)
const CLI = fileURLToPath(new URL('../src/cli.ts', import.meta.url))
const logger = pino({ level: 'silent' })
const TICKS_PER_SECOND = 100 // USER_HZ on Linux

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

function bodyOfFrameSize(did: string, frameSize: number): Uint8Array {
  const make = (pad: number) =>
    encode({ seq: 0, repo: did, rev: '3kabcdefghi22', since: null, blocks: toBytes(randomBytes(pad)), ops: [], time: new Date().toISOString(), tooBig: false, rebase: false })
  const probe = frameWithSeq('#commit', make(frameSize), 1).length - frameSize
  return make(Math.max(1, frameSize - probe))
}

/** user + system CPU seconds of a process, from /proc/<pid>/stat. */
function processCpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return (Number(fields[11]) + Number(fields[12])) / TICKS_PER_SECOND
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

class Clients {
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

async function main(): Promise<void> {
  const adminUrl = process.env.BENCH_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres'
  const counts = (process.env.BENCH_CONSUMERS ?? '0,50,200').split(',').map(Number)
  const rate = Number(process.env.BENCH_RATE ?? 1000)
  const seconds = Number(process.env.BENCH_SECONDS ?? 8)
  const frameBytes = Number(process.env.BENCH_FRAME_BYTES ?? 1024)
  const name = 'atrelay_bench_split_' + randomBytes(5).toString('hex')
  await admin(adminUrl, `create database ${name}`)
  const dbUrl = new URL(adminUrl)
  dbUrl.pathname = '/' + name

  const source = new SyntheticSource()
  const firehose = new Firehose({ sequencer: source, eventLog: { readRange: async () => [], oldestSeq: async () => undefined }, maxConsumerLag: 1e9, logger, registry: new Registry() })
  const server = createServer((_q, r) => r.end())
  server.on('upgrade', (req, socket, head) => firehose.handleUpgrade(req, socket, head))
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const upstreamPort = (server.address() as AddressInfo).port

  const apiPort = await freePort()
  // BENCH_SPLITTER_NODE_ARGS, e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof", to profile the splitter process.
  const nodeArgs = (process.env.BENCH_SPLITTER_NODE_ARGS ?? '').split(' ').filter(Boolean)
  const splitter = spawn(process.execPath, [...nodeArgs, '--import', 'tsx', CLI, 'splitter', '--upstream', `ws://127.0.0.1:${upstreamPort}`], {
    env: { ...process.env, DATABASE_URL: dbUrl.toString(), RELAY_API_LISTEN: `127.0.0.1:${apiPort}`, RELAY_METRICS_LISTEN: `127.0.0.1:${await freePort()}`, LOG_LEVEL: 'info', RELAY_CONSUMER_MAX_LAG: '100000000' },
    stdio: ['ignore', 'pipe', 'inherit'],
  })
  const connected = new Promise<void>((resolve) =>
    createInterface({ input: splitter.stdout! }).on('line', (line) => {
      if (line.includes('connected to the upstream relay')) resolve()
    }),
  )
  const bodies = Array.from({ length: 64 }, (_, i) => bodyOfFrameSize(`did:plc:bench${i}`, frameBytes))
  const run = async (ms: number) => {
    const start = performance.now()
    let published = 0
    while (performance.now() < start + ms) {
      const due = Math.floor(((performance.now() - start) / 1000) * rate) - published
      if (due > 0) {
        source.publish(bodies, due)
        published += due
      }
      await new Promise((r) => setTimeout(r, 2))
    }
  }
  const rows: string[] = []
  let baseline: number | undefined
  try {
    await connected
    await run(2000) // warm-up: first partitions, JIT
    for (const n of counts) {
      const clients = n > 0 ? new Clients(`ws://127.0.0.1:${apiPort}/xrpc/com.atproto.sync.subscribeRepos`, n) : undefined
      await clients?.opened()
      await run(1000)
      const got0 = (await clients?.count()) ?? 0
      const seq0 = source.seq
      const split0 = processCpuSeconds(splitter.pid!)
      const up0 = process.cpuUsage()
      const t0 = performance.now()
      await run(seconds * 1000)
      const upCpu = process.cpuUsage(up0)
      const splitCpu = processCpuSeconds(splitter.pid!) - split0
      const elapsed = (performance.now() - t0) / 1000
      const events = source.seq - seq0
      const got = ((await clients?.count()) ?? 0) - got0
      clients?.exit()
      const perEvent = (splitCpu * 1e6) / events
      baseline ??= n === 0 ? perEvent : undefined
      const marginal = baseline !== undefined && n > 0 ? (perEvent - baseline) / n : undefined
      rows.push(
        `${String(n).padStart(4)} consumers: splitter ${perEvent.toFixed(1)} µs CPU/event` +
          (marginal !== undefined ? ` (${marginal.toFixed(2)} µs per consumer per event over 0 consumers)` : '') +
          `, upstream ${(((upCpu.user + upCpu.system) / events)).toFixed(1)} µs CPU/event, ${Math.round(events / elapsed)} events/s, ${Math.round(got / elapsed)} msgs/s delivered (${n > 0 ? ((got / (events * n)) * 100).toFixed(1) : '-'} % of owed)`,
      )
      await new Promise((r) => setTimeout(r, 500))
    }
  } finally {
    splitter.kill('SIGTERM')
    await new Promise((r) => splitter.once('exit', r))
    await firehose.close()
    server.close()
    await admin(adminUrl, `drop database if exists ${name} with (force)`)
  }
  console.log(`\nsplitter benchmark (node ${process.version}; ${rate} events/s of ~${frameBytes} B frames; ${seconds} s per run)`)
  for (const r of rows) console.log('  ' + r)
}

function runClients(): void {
  const [, , , url, nArg] = process.argv
  const n = Number(nArg)
  let received = 0
  let open = 0
  const sockets: WebSocket[] = []
  for (let i = 0; i < n; i++) {
    const ws = new WebSocket(url!, { perMessageDeflate: false })
    ws.on('message', () => received++)
    ws.on('open', () => {
      if (++open === n) process.stdout.write('open\n')
    })
    ws.on('error', (err) => process.stderr.write(`client error ${String(err)}\n`))
    sockets.push(ws)
  }
  createInterface({ input: process.stdin }).on('line', (line) => {
    if (line === 'count') process.stdout.write(`count ${received}\n`)
    if (line === 'exit') {
      for (const ws of sockets) ws.terminate()
      process.exit(0)
    }
  })
}

if (process.argv[2] === 'clients') runClients()
else await main()
