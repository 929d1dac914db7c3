/**
 * Child process: the fake host fleet replaying the corpus (so its CPU is not
 * the relay's), plus an optional latency probe. Every corpus frame is stamped
 * with the time its host hands it to the socket; the probe subscribes to the
 * relay's firehose and matches what arrives by (DID, rev) — both ends in this
 * one process, on one clock. Also serves the corpus DID documents statically
 * (`staticPlcUrl`, see static-plc.ts) next to the real PLC (`plcUrl`).
 *
 *   node --import tsx bench/suite/fleet-child.ts '{"params":{…},"totalRate":0}'
 * Commands: status, rate {totalRate}, probe {url}, record {on}, latency,
 * window {on}, windowLatency (by send time, for the attacks bench).
 */
import WebSocket from 'ws'
import { decodeFrame, type MessageFrame } from '../../src/atproto/frame.js'
import { ensureCorpus, loadHostAccounts, loadHostFrames } from '../corpus/corpus.js'
import type { CorpusParams } from '../corpus/params.js'
import { FakeHostFleet } from '../fake-host-fleet.js'
import type { SeqFrame } from '../../test/helpers/fake-pds.js'
import { serveRpc } from './rpc.js'
import { StaticPlc } from './static-plc.js'

interface Args {
  params: Partial<CorpusParams>
  /** frames/s over all hosts; 0 = as fast as the relay reads */
  totalRate: number
}

/** The key a frame is matched on at the consumer: repo/did and rev (#commit, #sync). */
function frameKey(frame: MessageFrame): string | null {
  const body = frame.body
  if (frame.t === '#commit') return `${body.repo as string}|${body.rev as string}`
  if (frame.t === '#sync') return `${body.did as string}|${body.rev as string}`
  return null
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!
}

async function main(): Promise<void> {
  const args = JSON.parse(process.argv[2] ?? '{}') as Args
  const log = (m: string) => console.error(m)
  const corpus = await ensureCorpus({ params: args.params, log })
  const fleet = await FakeHostFleet.start({ corpus, totalRate: args.totalRate, log })
  const ratePerHost = args.totalRate > 0 ? args.totalRate / fleet.hosts.length : 0
  const staticPlc = await StaticPlc.start(fleet.hosts.flatMap((h) => loadHostAccounts(corpus, h.corpusHost).map((account) => ({ account, pdsUrl: h.pds.url }))))

  // Replace each host's play source with one that stamps send times (nothing has been sent yet:
  // a host appends frames only while someone is subscribed).
  const sentAt = new Map<string, number>()
  // A send-time window (bench/attacks.bench.ts): events first sent while it is open count toward it whenever
  // they arrive, and those never received are counted. Repeats of a key (each corpus #sync repeats its
  // account's current rev, which the relay drops as a duplicate) are not counted.
  const everSent = new Set<string>()
  const win = { open: false, sent: 0, pending: new Set<string>(), latencies: [] as number[] }
  for (const h of fleet.hosts) {
    const frames = loadHostFrames(corpus, h.corpusHost)
    const keys = frames.map((f) => frameKey(decodeFrame(f) as MessageFrame))
    function* source(): Generator<SeqFrame> {
      for (let i = 0; i < frames.length; i++) {
        const key = keys[i]
        if (key) {
          sentAt.set(key, performance.now())
          if (win.open && !everSent.has(key)) {
            win.sent++
            win.pending.add(key)
          }
          everSent.add(key)
        }
        yield { seq: i + 1, bytes: frames[i]! }
      }
    }
    h.pds.play(source(), { ratePerSec: ratePerHost })
  }

  let probe: WebSocket | null = null
  let recording = false
  const latencies: number[] = []
  // An account's first #commit/#sync at the relay follows its #identity (PLC resolution, handle check) and account creation.
  const firstLatencies: number[] = []
  const seenDids = new Set<string>()
  const probeStats = { received: 0, matched: 0, unmatched: 0, other: 0, errors: [] as string[] }

  serveRpc(
    { plcUrl: fleet.plcUrl, staticPlcUrl: staticPlc.url, hosts: fleet.hosts.map((h) => ({ hostname: h.pds.hostname, wsUrl: h.pds.wsUrl, frames: h.frames })), totalFrames: fleet.totalFrames },
    {
      status: () => ({ released: fleet.framesReleased, total: fleet.totalFrames, sent: fleet.hosts.reduce((n, h) => n + h.pds.stats.framesSent, 0) }),
      rate: (a) => {
        fleet.setRatePerHost(Number(a.totalRate) / fleet.hosts.length)
        return null
      },
      probe: (a) =>
        new Promise<null>((resolve, reject) => {
          const ws = new WebSocket(String(a.url), { perMessageDeflate: false })
          probe = ws
          ws.on('message', (data: Buffer) => {
            const now = performance.now()
            probeStats.received++
            let frame
            try {
              frame = decodeFrame(new Uint8Array(data.buffer, data.byteOffset, data.byteLength))
            } catch (err) {
              probeStats.errors.push(String(err))
              return
            }
            if (frame.op !== 1) {
              probeStats.errors.push(`error frame ${frame.error}`)
              return
            }
            const key = frameKey(frame)
            if (key === null) {
              probeStats.other++
              return
            }
            const sent = sentAt.get(key)
            if (sent === undefined) {
              probeStats.unmatched++
              return
            }
            sentAt.delete(key)
            probeStats.matched++
            if (win.pending.delete(key)) win.latencies.push(now - sent)
            const did = key.slice(0, key.indexOf('|'))
            const first = !seenDids.has(did)
            seenDids.add(did)
            if (recording) (first ? firstLatencies : latencies).push(now - sent)
          })
          ws.once('open', () => resolve(null))
          ws.once('error', reject)
          ws.on('close', (code) => probeStats.errors.push(`probe closed ${code}`))
        }),
      record: (a) => {
        recording = a.on === true
        if (recording) {
          latencies.length = 0
          firstLatencies.length = 0
        }
        return null
      },
      window: (a) => {
        win.open = a.on === true
        if (win.open) Object.assign(win, { sent: 0, pending: new Set<string>(), latencies: [] })
        return null
      },
      windowLatency: () => {
        const sorted = [...win.latencies].sort((x, y) => x - y)
        return { sent: win.sent, received: sorted.length, notForwarded: win.pending.size, p50: percentile(sorted, 50), p99: percentile(sorted, 99), max: sorted[sorted.length - 1] ?? NaN, probeErrors: probeStats.errors.slice(0, 5) }
      },
      latency: () => {
        const sorted = [...latencies, ...firstLatencies].sort((x, y) => x - y)
        const rest = [...latencies].sort((x, y) => x - y)
        const firsts = [...firstLatencies].sort((x, y) => x - y)
        return {
          existingAccounts: { count: rest.length, p50: percentile(rest, 50), p99: percentile(rest, 99) },
          firstEventOfAccount: { count: firsts.length, p50: percentile(firsts, 50), p99: percentile(firsts, 99) },
          count: sorted.length,
          p50: percentile(sorted, 50),
          p90: percentile(sorted, 90),
          p99: percentile(sorted, 99),
          max: sorted[sorted.length - 1] ?? NaN,
          mean: sorted.reduce((s, x) => s + x, 0) / Math.max(1, sorted.length),
          probe: { ...probeStats, errors: probeStats.errors.slice(0, 5) },
        }
      },
    },
    async () => {
      const p = probe as WebSocket | null
      p?.terminate()
      await staticPlc.close()
      await fleet.close()
    },
  )
}

await main()
