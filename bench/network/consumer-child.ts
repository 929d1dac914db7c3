/**
 * Child process: one firehose consumer of the relay, the way a downstream
 * service would run it: it reconnects with its last seq as the cursor when the
 * relay goes away (kill -9, catch-up), and checks what it gets:
 *   - seqs strictly increasing by one (gaps and repeats counted);
 *   - per DID, #commit revs strictly increasing and each `since` equal to the
 *     previous rev it saw (a skipped commit shows as a mismatch);
 *   - host → consumer latency of every #commit, from its rev (a TID of the wall
 *     clock when the host built it, bench/network/fast-repo.ts), summarised
 *     per second and per minute.
 *
 *   node --import tsx bench/network/consumer-child.ts '{"url":"ws://…"}'
 * Commands: drain (closed per-second and per-minute summaries), stats, url {url}.
 */
import WebSocket from 'ws'
import { tidToMicros } from '../../src/atproto/tid.js'
import { decodeFrame } from '../../test/helpers/frames.js'
import { serveRpc } from '../suite/rpc.js'
import { wallMicros } from './fast-repo.js'
import { latencyBucket, type LatencySummary } from './latency.js'

let url = (JSON.parse(process.argv[2] ?? '{}') as { url: string }).url
const stats = {
  received: 0,
  commits: 0,
  lastSeq: 0,
  seqGaps: 0,
  seqMissing: 0,
  seqRepeats: 0,
  revRepeats: 0,
  sinceMismatches: 0,
  connects: 0,
  closes: 0,
  infoFrames: [] as string[],
  errorFrames: [] as string[],
  sinceSamples: [] as string[],
}
const lastRev = new Map<string, string>()
const perSecond = new Map<number, number[]>()
const perMinute = new Map<number, number[]>()
let ws: WebSocket | null = null
let stopping = false

function summarise(t: number, xs: number[], histogram: boolean): LatencySummary {
  xs.sort((a, b) => a - b)
  const at = (p: number) => xs[Math.min(xs.length - 1, Math.floor(p * xs.length))]!
  const out: LatencySummary = { t, n: xs.length, p50: at(0.5), p99: at(0.99), max: xs[xs.length - 1]! }
  if (histogram) {
    const h = new Map<number, number>()
    for (const x of xs) {
      const b = latencyBucket(x)
      h.set(b, (h.get(b) ?? 0) + 1)
    }
    out.h = [...h]
  }
  return out
}

function onMessage(data: Buffer): void {
  const nowUs = wallMicros()
  stats.received++
  let frame
  try {
    frame = decodeFrame(new Uint8Array(data.buffer, data.byteOffset, data.byteLength))
  } catch (err) {
    stats.errorFrames.push(`undecodable: ${(err as Error).message}`)
    return
  }
  if (frame.header.op !== 1) {
    if (stats.errorFrames.length < 20) stats.errorFrames.push(String(frame.body.error))
    return
  }
  const t = frame.header.t
  const body = frame.body
  if (t === '#info') {
    if (stats.infoFrames.length < 20) stats.infoFrames.push(String(body.name))
    return
  }
  const seq = body.seq as number
  if (seq <= stats.lastSeq) stats.seqRepeats++
  else {
    if (stats.lastSeq > 0 && seq > stats.lastSeq + 1) {
      stats.seqGaps++
      stats.seqMissing += seq - stats.lastSeq - 1
    }
    stats.lastSeq = seq
  }
  if (t !== '#commit') return
  stats.commits++
  const did = body.repo as string
  const rev = body.rev as string
  const prev = lastRev.get(did)
  if (prev !== undefined) {
    if (rev <= prev) stats.revRepeats++
    else if (body.since !== prev) {
      stats.sinceMismatches++
      if (stats.sinceSamples.length < 10) stats.sinceSamples.push(`${did} since ${String(body.since)} after ${prev} (seq ${seq})`)
    }
  }
  if (prev === undefined || rev > prev) lastRev.set(did, rev)
  const latencyMs = (nowUs - tidToMicros(rev)) / 1000
  const sec = Math.floor(nowUs / 1e6)
  let a = perSecond.get(sec)
  if (!a) perSecond.set(sec, (a = []))
  a.push(latencyMs)
  const min = Math.floor(sec / 60) * 60
  let b = perMinute.get(min)
  if (!b) perMinute.set(min, (b = []))
  b.push(latencyMs)
}

function connect(): void {
  if (stopping) return
  const target = stats.lastSeq > 0 ? `${url}?cursor=${stats.lastSeq}` : url
  const socket = new WebSocket(target, { perMessageDeflate: false, maxPayload: 64 * 1024 * 1024 })
  ws = socket
  socket.on('open', () => stats.connects++)
  socket.on('message', onMessage)
  socket.on('error', () => {})
  socket.on('close', () => {
    stats.closes++
    if (ws === socket) setTimeout(connect, 200)
  })
}
connect()

serveRpc(
  { pid: process.pid },
  {
    drain: (a) => {
      const all = a.all === true
      const nowSec = Math.floor(wallMicros() / 1e6)
      const seconds: LatencySummary[] = []
      for (const [t, xs] of perSecond) if (all || t < nowSec - 1) (seconds.push(summarise(t, xs, true)), perSecond.delete(t))
      const minutes: LatencySummary[] = []
      for (const [t, xs] of perMinute) if (all || t < nowSec - 61) (minutes.push(summarise(t, xs, false)), perMinute.delete(t))
      return { seconds, minutes }
    },
    stats: () => ({ ...stats, accounts: lastRev.size, open: ws?.readyState === WebSocket.OPEN }),
    url: (a) => {
      url = String(a.url)
      return null
    },
  },
  async () => {
    stopping = true
    ws?.terminate()
  },
)
