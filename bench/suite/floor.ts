/**
 * The CPU floor: the protocol core alone, on one core, over every frame of the
 * corpus: decode the frame, then verifyCommitEvent / verifySyncEvent (strict)
 * with the account's key already parsed (as a warm identity cache holds it).
 * No sockets, no database, no scheduling. Run as a child process so it has a
 * thread (and a heap) to itself; prints one JSON line.
 *
 *   node --import tsx bench/suite/floor.ts '<corpus params JSON>'
 */
import { decodeFrame, type MessageFrame } from '../../src/atproto/frame.js'
import { assertNativeSecp256k1, parseDidKey, type PublicKey } from '../../src/atproto/keys.js'
import { verifyCommitEvent, verifySyncEvent } from '../../src/atproto/verify.js'
import { ensureCorpus, loadHostAccounts, loadHostFrames } from '../corpus/corpus.js'
import type { CorpusParams } from '../corpus/params.js'

export interface FloorResult {
  frames: number
  verified: { commit: number; sync: number }
  /** Frames that are only decoded (#identity, #account). */
  decodedOnly: number
  failures: Record<string, number>
  cpuSeconds: number
  wallSeconds: number
  /** frames / CPU second */
  eventsPerCpuSecond: number
  usPerEvent: number
}

async function main(): Promise<void> {
  assertNativeSecp256k1()
  const params = JSON.parse(process.argv[2] ?? '{}') as Partial<CorpusParams>
  const corpus = await ensureCorpus({ params })
  const keys = new Map<string, PublicKey>()
  const hosts = corpus.manifest.hosts.map((h) => {
    for (const a of loadHostAccounts(corpus, h)) keys.set(a.did, parseDidKey(a.signingKey))
    return loadHostFrames(corpus, h)
  })
  // Round-robin over hosts, as the relay sees them arrive (per-account order is kept).
  const frames: Uint8Array[] = []
  const longest = Math.max(...hosts.map((h) => h.length))
  for (let i = 0; i < longest; i++) for (const h of hosts) if (i < h.length) frames.push(h[i]!)

  const hasHead = new Set<string>()
  const failures: Record<string, number> = {}
  const verified = { commit: 0, sync: 0 }
  let decodedOnly = 0
  const now = Date.now()
  const run = (list: Uint8Array[], record: boolean) => {
    for (const bytes of list) {
      const frame = decodeFrame(bytes) as MessageFrame
      const body = frame.body
      if (frame.t !== '#commit' && frame.t !== '#sync') {
        if (record) decodedOnly++
        continue
      }
      const did = (frame.t === '#commit' ? body.repo : body.did) as string
      const key = keys.get(did)
      if (key === undefined) throw new Error(`no key for ${did}`)
      const options = { strict: true, hasStoredHead: hasHead.has(did), nowMs: now }
      const r = frame.t === '#commit' ? verifyCommitEvent(body, key, options) : verifySyncEvent(body, key, options)
      if (record) {
        if (r.ok) verified[frame.t === '#commit' ? 'commit' : 'sync']++
        else failures[r.reason] = (failures[r.reason] ?? 0) + 1
      }
      if (r.ok) hasHead.add(did)
    }
  }
  // Warm-up over a slice (JIT), then the timed pass over every frame.
  run(frames.slice(0, Math.min(2000, frames.length)), false)
  hasHead.clear()
  const cpu0 = process.cpuUsage()
  const wall0 = performance.now()
  run(frames, true)
  const cpu = process.cpuUsage(cpu0)
  const cpuSeconds = (cpu.user + cpu.system) / 1e6
  const wallSeconds = (performance.now() - wall0) / 1000
  const all = frames
  const result: FloorResult = {
    frames: all.length,
    verified,
    decodedOnly,
    failures,
    cpuSeconds,
    wallSeconds,
    eventsPerCpuSecond: Math.round(all.length / cpuSeconds),
    usPerEvent: (cpuSeconds * 1e6) / all.length,
  }
  console.log(JSON.stringify(result))
}

await main()
