// The reference TypeScript consumer as a baseline: @atproto/sync's Firehose with full
// validation (unauthenticatedCommits: false: commit signature against the DID's PLC key
// and an MST proof per op), from test/peer's own node_modules (Node 20 legacy stack).
// Points it at one fake host with cursor 0 and times how fast it works through the host's
// corpus. DIDs are resolved once before timing (a warm cache, like the relay's floor).
//
//   node bench/suite/reference.mjs '{"wsUrl":"ws://localhost:P","plcUrl":"http://…","frames":N,"dids":[…],"timeoutMs":90000}'
// Prints one JSON line.
import { createRequire } from 'node:module'
import { fileURLToPath } from 'node:url'

const peerRequire = createRequire(fileURLToPath(new URL('../../test/peer/package.json', import.meta.url)))
const { Firehose, MemoryRunner } = peerRequire('@atproto/sync')
const { IdResolver, MemoryCache } = peerRequire('@atproto/identity')
const syncVersion = peerRequire('@atproto/sync/package.json').version

const args = JSON.parse(process.argv[2])
const idResolver = new IdResolver({ plcUrl: args.plcUrl, didCache: new MemoryCache(), fetch: globalThis.fetch })

// Warm the DID cache (bounded concurrency).
const dids = [...args.dids]
await Promise.all(
  Array.from({ length: 8 }, async () => {
    for (let did = dids.pop(); did; did = dids.pop()) await idResolver.did.resolveAtprotoData(did)
  }),
)

const runner = new MemoryRunner({ startCursor: 0 })
let events = 0
let errors = 0
const errorSamples = []
let first = null
const cpu0 = process.cpuUsage()
const firehose = new Firehose({
  idResolver,
  service: args.wsUrl,
  runner,
  unauthenticatedCommits: false,
  unauthenticatedHandles: true,
  handleEvent: async () => {
    first ??= performance.now()
    events++
  },
  onError: (err) => {
    errors++
    if (errorSamples.length < 5) errorSamples.push(String(err?.message ?? err))
  },
})
const t0 = performance.now()
void firehose.start()
const deadline = t0 + (args.timeoutMs ?? 90_000)
let cursor = 0
while (performance.now() < deadline) {
  cursor = runner.getCursor() ?? 0
  if (cursor >= args.frames) break
  await new Promise((r) => setTimeout(r, 20))
}
const end = performance.now()
const cpu = process.cpuUsage(cpu0)
await firehose.destroy()
await runner.destroy()
const seconds = (end - t0) / 1000
console.log(
  JSON.stringify({
    syncVersion,
    frames: cursor,
    complete: cursor >= args.frames,
    events,
    errors,
    errorSamples,
    seconds,
    framesPerSec: cursor / seconds,
    cpuSeconds: (cpu.user + cpu.system) / 1e6,
    framesPerCpuSecond: cursor / ((cpu.user + cpu.system) / 1e6),
  }),
)
process.exit(0)
