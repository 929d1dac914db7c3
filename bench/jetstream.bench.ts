/**
 * Jetstream benchmark (`npm run bench:jetstream`): 200 Jetstream v1 subscribers with mixed filters
 * (a third all events, a third one collection, a third 100 DIDs; half of them zstd) at 1,000
 * events/s of real commit frames (test/fixtures: production commits and a real PDS's), against
 * the CBOR firehose fan-out to as many consumers at the same rate in the same run. Reports the
 * server's CPU per subscriber per event for both, bytes per event compressed vs plain, and the
 * p99 latency from publication to a text subscriber. Clients run in a child process.
 * Env: BENCH_SUBSCRIBERS (200), BENCH_RATE (1,000 events/s), BENCH_SECONDS (8).
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { encode } from '@atcute/cbor'
import pino from 'pino'
import { Registry } from 'prom-client'
import WebSocket from 'ws'
import { decodeFrame, frameWithSeq } from '../src/atproto/frame.js'
import { Firehose } from '../src/firehose/firehose.js'
import { JetstreamServer } from '../src/jetstream/server.js'
import type { CommittedEvent, CommittedEventSource } from '../src/sequencer/types.js'
import { fromJsonModel } from '../test/atproto/support/fixtures.js'

const SELF = fileURLToPath(import.meta.url)
const FIXTURES = new URL('../test/fixtures/', import.meta.url)
const logger = pino({ level: 'silent' })
const DIDS = Array.from({ length: 1000 }, (_, i) => `did:plc:bench${String(i).padStart(19, '0')}`)
const COLLECTION = 'app.bsky.feed.repost'


/** Real #commit bodies (with ops), each re-addressed to one of DIDS: what a busy relay carries. */
function realBodies(): { did: string; body: Uint8Array }[] {
  const bodies: Record<string, unknown>[] = []
  for (const f of ['firehose_commit_4621317030', 'firehose_commit_4621317332', 'firehose_commit_4623075231']) {
    bodies.push(fromJsonModel(JSON.parse(readFileSync(new URL(`indigo/repo/${f}.json`, FIXTURES), 'utf8'))) as Record<string, unknown>)
  }
  for (const line of readFileSync(new URL('pds-scenario/frames.jsonl', FIXTURES), 'utf8').split('\n')) {
    if (!line.trim()) continue
    const { t, b64 } = JSON.parse(line) as { t: string; b64: string }
    if (t !== '#commit') continue
    const f = decodeFrame(Buffer.from(b64, 'base64'))
    if (f.op === 1 && Array.isArray(f.body.ops) && f.body.ops.length > 0 && f.body.ops.length < 5) bodies.push(f.body)
  }
  return DIDS.map((did, i) => ({ did, body: encode({ ...bodies[i % bodies.length], repo: did }) }))
}

class SyntheticSource implements CommittedEventSource {
  private readonly listeners: ((e: CommittedEvent[]) => void)[] = []
  seq = 0
  onCommitted(listener: (e: CommittedEvent[]) => void): () => void {
    this.listeners.push(listener)
    return () => this.listeners.splice(this.listeners.indexOf(listener), 1)
  }
  currentSeq(): number {
    return this.seq
  }
  publish(bodies: { did: string; body: Uint8Array }[], count: number): void {
    const events: CommittedEvent[] = []
    const timeUs = Date.now() * 1000
    for (let i = 0; i < count; i++) {
      const seq = ++this.seq
      const b = bodies[seq % bodies.length]!
      events.push({ seq, timeUs: timeUs + i, accountId: 1, did: b.did, kind: 1, t: '#commit', frame: frameWithSeq('#commit', b.body, seq) })
    }
    for (const l of this.listeners) l(events)
  }
}

async function listen(handler: (req: import('node:http').IncomingMessage, socket: import('node:stream').Duplex, head: Buffer) => void): Promise<{ server: Server; port: number }> {
  const server = createServer((_q, r) => r.end())
  server.on('upgrade', handler)
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return { server, port: (server.address() as AddressInfo).port }
}

class Clients {
  private readonly child: ChildProcess
  private readonly lines: string[] = []
  private waiter: (() => void) | undefined
  constructor(mode: 'jetstream' | 'firehose', port: number, n: number) {
    this.child = spawn(process.execPath, ['--import', 'tsx', SELF, 'clients', mode, String(port), String(n)], { stdio: ['pipe', 'pipe', 'inherit'] })
    createInterface({ input: this.child.stdout! }).on('line', (line) => {
      this.lines.push(line)
      this.waiter?.()
    })
  }
  async next(prefix: string): Promise<string> {
    for (;;) {
      const i = this.lines.findIndex((l) => l.startsWith(prefix))
      if (i >= 0) return this.lines.splice(i, 1)[0]!
      await new Promise<void>((resolve) => (this.waiter = resolve))
    }
  }
  async stats(): Promise<{ messages: number; bytes: number; p99: number; p50: number; clientCpu: number }> {
    this.child.stdin!.write('stats\n')
    const [, m, b, p, p50, c] = (await this.next('stats ')).split(' ')
    return { messages: Number(m), bytes: Number(b), p99: Number(p), p50: Number(p50), clientCpu: Number(c) }
  }
  exit(): void {
    this.child.stdin!.write('exit\n')
  }
}

async function runAt(source: SyntheticSource, bodies: { did: string; body: Uint8Array }[], rate: number, ms: number): Promise<void> {
  const start = performance.now()
  let published = 0
  while (performance.now() - start < ms) {
    const due = Math.floor(((performance.now() - start) / 1000) * rate) - published
    if (due > 0) {
      source.publish(bodies, due)
      published += due
    }
    await new Promise((r) => setTimeout(r, 5))
  }
}

async function measure(mode: 'jetstream' | 'firehose', n: number, rate: number, seconds: number, bodies: { did: string; body: Uint8Array }[]) {
  const source = new SyntheticSource()
  const registry = new Registry()
  let close: () => Promise<void>
  let port: number
  let server: Server
  if (mode === 'jetstream') {
    const jet = new JetstreamServer({
      source,
      log: { readPage: async () => [], afterSeqForTime: async () => undefined, oldestSeq: async () => undefined },
      ringSize: 20_000,
      maxLag: 1e9,
      logger,
      registry,
    })
    ;({ server, port } = await listen((req, socket, head) => jet.handleUpgrade(req, socket, head)))
    close = () => jet.close()
  } else {
    const fh = new Firehose({ sequencer: source, eventLog: { readRange: async () => [], oldestSeq: async () => undefined }, maxConsumerLag: 1e9, logger, registry })
    ;({ server, port } = await listen((req, socket, head) => fh.handleUpgrade(req, socket, head)))
    close = () => fh.close()
  }
  const clients = new Clients(mode, port, n)
  await clients.next('open')
  await runAt(source, bodies, rate, 1500) // warm-up
  const s0 = await clients.stats()
  const seq0 = source.seq
  const cpu0 = process.cpuUsage()
  const t0 = performance.now()
  await runAt(source, bodies, rate, seconds * 1000)
  const cpu = process.cpuUsage(cpu0)
  const elapsed = (performance.now() - t0) / 1000
  await new Promise((r) => setTimeout(r, 300))
  const s1 = await clients.stats()
  const events = source.seq - seq0
  const metrics = await registry.getMetricsAsJSON()
  const value = (name: string, labels: Record<string, string> = {}) =>
    metrics.find((m) => m.name === name)?.values.filter((v) => Object.entries(labels).every(([k, x]) => v.labels[k] === x)).reduce((a, v) => a + v.value, 0) ?? 0
  clients.exit()
  await close()
  server.close()
  return {
    events,
    eventsPerSec: events / elapsed,
    cpuPerSubscriberEvent: (cpu.user + cpu.system) / (n * events),
    messages: s1.messages - s0.messages,
    bytes: s1.bytes - s0.bytes,
    p99: s1.p99,
    p50: s1.p50,
    clientCpuSeconds: s1.clientCpu - s0.clientCpu,
    serverCpuSeconds: (cpu.user + cpu.system) / 1e6,
    elapsed,
    zstdIn: value('relay_jetstream_zstd_input_bytes_total'),
    zstdOut: value('relay_jetstream_zstd_output_bytes_total'),
    textBytes: value('relay_jetstream_bytes_sent_total', { encoding: 'text' }),
    zstdBytes: value('relay_jetstream_bytes_sent_total', { encoding: 'zstd' }),
    textMessages: value('relay_jetstream_messages_sent_total', { encoding: 'text' }),
    zstdMessages: value('relay_jetstream_messages_sent_total', { encoding: 'zstd' }),
  }
}

async function main(): Promise<void> {
  const n = Number(process.env.BENCH_SUBSCRIBERS ?? 200)
  const rate = Number(process.env.BENCH_RATE ?? 1000)
  const seconds = Number(process.env.BENCH_SECONDS ?? 8)
  const bodies = realBodies()
  const fh = await measure('firehose', n, rate, seconds, bodies)
  const js = await measure('jetstream', n, rate, seconds, bodies)
  const f = (x: number, d = 2) => x.toFixed(d)
  console.log(`\njetstream benchmark (node ${process.version}; ${n} subscribers, ${Math.round(js.eventsPerSec)} events/s for ${seconds} s)`)
  console.log(`  CBOR firehose fan-out   ${f(fh.cpuPerSubscriberEvent)} µs server CPU per consumer per event (${fh.messages} frames delivered)`)
  console.log(
    `  Jetstream v1            ${f(js.cpuPerSubscriberEvent)} µs server CPU per subscriber per event = ${f(js.cpuPerSubscriberEvent / fh.cpuPerSubscriberEvent)} × the firehose (target <= 2 ×; ${js.messages} messages delivered)`,
  )
  console.log(`  zstd ÷ plain JSON       ${f(js.zstdOut / js.zstdIn, 3)} (each message compressed once: ${js.zstdOut} / ${js.zstdIn} bytes; target <= 0.45)`)
  console.log(`  wire bytes per message  text ${f(js.textBytes / js.textMessages, 0)}, zstd ${f(js.zstdBytes / js.zstdMessages, 0)}`)
  console.log(`  latency                 p50 ${f(js.p50, 1)} ms, p99 ${f(js.p99, 1)} ms publication → text subscriber (all-events third, warm-up included)`)
  console.log(`  CPU seconds             server ${f(js.serverCpuSeconds)} (firehose ${f(fh.serverCpuSeconds)}), clients ${f(js.clientCpuSeconds)} (firehose ${f(fh.clientCpuSeconds)}) in ${f(js.elapsed, 1)} s`)
  if (process.env.BENCH_JSON === '1') {
    // `npm run bench`'s jetstream phase reads this last line (bench/suite/rpc.ts runJsonChild).
    const result: JetstreamBenchResult = {
      subscribers: n,
      eventsPerSec: js.eventsPerSec,
      seconds,
      firehoseUsPerSubscriberEvent: fh.cpuPerSubscriberEvent,
      jetstreamUsPerSubscriberEvent: js.cpuPerSubscriberEvent,
      zstdRatio: js.zstdOut / js.zstdIn,
      textBytesPerMessage: js.textBytes / js.textMessages,
      zstdBytesPerMessage: js.zstdBytes / js.zstdMessages,
      p50Ms: js.p50,
      p99Ms: js.p99,
    }
    console.log(JSON.stringify(result))
  }
}

/** What the jetstream phase of `npm run bench` reports. */
export interface JetstreamBenchResult {
  subscribers: number
  eventsPerSec: number
  seconds: number
  firehoseUsPerSubscriberEvent: number
  jetstreamUsPerSubscriberEvent: number
  /** zstd bytes ÷ plain JSON bytes, each message compressed once */
  zstdRatio: number
  textBytesPerMessage: number
  zstdBytesPerMessage: number
  p50Ms: number
  p99Ms: number
}

// ---------------------------------------------------------------- child: clients
function runClients(): void {
  const [, , , mode, port, nArg] = process.argv
  const n = Number(nArg)
  let messages = 0
  let bytes = 0
  const latencies: number[] = []
  const sockets: WebSocket[] = []
  let open = 0
  for (let i = 0; i < n; i++) {
    let url: string
    if (mode === 'firehose') url = `ws://127.0.0.1:${port}/xrpc/com.atproto.sync.subscribeRepos`
    else {
      const q = new URLSearchParams()
      if (i % 3 === 1) q.append('wantedCollections', COLLECTION)
      if (i % 3 === 2) for (const did of DIDS.slice((i * 7) % 900, ((i * 7) % 900) + 100)) q.append('wantedDids', did)
      if (i % 2 === 1) q.set('compress', 'true')
      url = `ws://127.0.0.1:${port}/subscribe?${q}`
    }
    const timed = mode === 'jetstream' && i % 3 === 0 && i % 2 === 0
    const ws = new WebSocket(url, { perMessageDeflate: false })
    ws.on('message', (data: Buffer, isBinary: boolean) => {
      messages++
      bytes += data.length
      if (timed && !isBinary && latencies.length < 200_000) {
        const m = /"time_us":(\d+)/.exec(data.toString('latin1', 0, 200))
        if (m) latencies.push(Date.now() - Number(m[1]) / 1000)
      }
    })
    ws.on('open', () => {
      if (++open === n) process.stdout.write('open\n')
    })
    ws.on('error', (err) => process.stderr.write(`client error ${String(err)}\n`))
    sockets.push(ws)
  }
  createInterface({ input: process.stdin }).on('line', (line) => {
    if (line === 'stats') {
      const sorted = [...latencies].sort((a, b) => a - b)
      process.stdout.write(`stats ${messages} ${bytes} ${sorted[Math.floor(sorted.length * 0.99)] ?? 0} ${sorted[Math.floor(sorted.length * 0.5)] ?? 0} ${process.cpuUsage().user / 1e6}\n`)
    }
    if (line === 'exit') {
      for (const ws of sockets) ws.terminate()
      process.exit(0)
    }
  })
}

if (process.argv[2] === 'clients') runClients()
else await main()
