/**
 * Child process: a slice of the fake network's hosts (one loopback port each)
 * and their active accounts, generating signed Sync 1.1 events on the fly at
 * the offered rate (Zipf over accounts), whether or not a relay is connected:
 * a relay that was down gets the backlog replayed from each host's ring.
 * An account is created (#identity, #account, genesis #commit, #sync) the
 * first time it is picked, so new accounts keep arriving through the run.
 * At most 2 actions per account per second (a PDS's write rate limit caps the busiest accounts).
 * Mix per action: ~98 % commits, 1.5 % handle changes (#identity after the
 * PLC stand-in has the new document), 0.5 % deactivations (reactivated on the
 * next action: #account, #identity, #sync).
 *
 *   node --import tsx bench/network/host-child.ts '<json Args>'
 * Commands: rate {perSec}, max {on}, stats.
 */
import { randomBytes } from 'node:crypto'
import { WebSocketServer } from 'ws'
import type { PdsEvent } from '../../test/helpers/frames.js'
import { NativeSecp256k1Keypair } from '../../test/helpers/fast-keys.js'
import { Rng, type StrongRef } from '../../test/helpers/records.js'
import { serveRpc } from '../suite/rpc.js'
import { FastAccount } from './fast-repo.js'
import { HostServer } from './host-server.js'
import { WeightedPicker, zipfWeights } from './zipf.js'

export interface HostChildArgs {
  /** Host ports and active-account counts of this slice. */
  hosts: { port: number; active: number }[]
  /** Global index of this slice's first active account, and the total (for the shared Zipf ranks). */
  activeOffset: number
  activeTotal: number
  zipf: number
  /** Most events one account makes per second (a PDS's write limit); 0: no cap. */
  accountRateCap: number
  seed: number
  registerUrl: string
  /** Frames each host keeps for cursor replay. */
  ringPerHost: number[]
}

const B32 = 'abcdefghijklmnopqrstuvwxyz234567'
const randomDid = () => 'did:plc:' + [...randomBytes(24)].map((b) => B32[b & 31]).join('')

const args = JSON.parse(process.argv[2] ?? '{}') as HostChildArgs
const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false, maxPayload: 1024 })
const hosts: HostServer[] = []
for (let i = 0; i < args.hosts.length; i++) hosts.push(await HostServer.start(args.hosts[i]!.port, wss, args.ringPerHost[i]!))

// Active accounts: keys now, repos on first use. Registered with the PLC stand-in up front.
const owner: HostServer[] = []
const accounts: FastAccount[] = []
const entries: { did: string; handle: string; key: string; pds: string }[] = []
hosts.forEach((h, i) => {
  for (let k = 0; k < args.hosts[i]!.active; k++) {
    const did = randomDid()
    const a = new FastAccount(did, `a${args.activeOffset + accounts.length}.net.test`, NativeSecp256k1Keypair.generate())
    accounts.push(a)
    owner.push(h)
    h.accounts.set(did, a)
    entries.push({ did, handle: a.handle, key: a.key.did(), pds: `http://localhost:${h.port}` })
  }
})
async function register(list: typeof entries): Promise<void> {
  for (let i = 0; i < list.length; i += 5000) {
    const res = await fetch(args.registerUrl, { method: 'POST', body: JSON.stringify(list.slice(i, i + 5000)) })
    if (res.status !== 204) throw new Error(`PLC stand-in register: ${res.status}`)
  }
}
await register(entries)
const weights = zipfWeights(args.activeTotal, args.zipf, args.seed).subarray(args.activeOffset, args.activeOffset + accounts.length)
const picker = new WeightedPicker(weights)
const others = accounts.slice(0, 500).map((a) => a.did)
const recent: StrongRef[] = []
const rng = new Rng(args.seed + args.activeOffset)

const counts = { frames: 0, commit: 0, created: 0, identity: 0, account: 0, sync: 0, handleChanges: 0 }
const deactivated = new Set<FastAccount>()
let ratePerSec = 0
let maxMode = false
let anchor = performance.now()
let produced = 0
let behind = 0

function count(events: PdsEvent[]): void {
  for (const e of events) {
    counts.frames++
    counts[e.t.slice(1) as 'commit' | 'identity' | 'account' | 'sync']++
  }
}

async function act(i: number): Promise<number> {
  const a = accounts[i]!
  const host = owner[i]!
  let events: PdsEvent[]
  if (!a.created) {
    events = await a.genesis()
    counts.created++
  } else if (deactivated.has(a)) {
    deactivated.delete(a)
    events = [a.accountEvent(true), a.identityEvent(), a.syncEvent()]
  } else {
    const r = rng.next()
    if (r < 0.015) {
      a.handle = `a${args.activeOffset + i}-${counts.handleChanges++}.net.test`
      await register([{ did: a.did, handle: a.handle, key: a.key.did(), pds: `http://localhost:${host.port}` }])
      events = [a.identityEvent()]
    } else if (r < 0.02) {
      deactivated.add(a)
      events = [a.accountEvent(false, 'deactivated')]
    } else {
      events = [await a.commit(rng, others, recent)]
    }
  }
  host.publish(events)
  count(events)
  return events.length
}

/**
 * Zipf, but no account faster than MAX_PER_ACCOUNT_PER_SEC: a PDS rate-limits writes (the Bluesky PDS allows
 * ~5,000 points an hour, ~0.5 creates/s sustained), so even the busiest accounts of the real network post a
 * few events a second at most. A pick inside its account's interval is drawn again (a few tries).
 */
const MAX_PER_ACCOUNT_PER_SEC = args.accountRateCap
const lastAct = new Float64Array(accounts.length)
let repicks = 0
function pickAccount(): number {
  const now = performance.now()
  let i = picker.pick(Math.random())
  for (let k = 0; MAX_PER_ACCOUNT_PER_SEC > 0 && k < 8 && now - lastAct[i]! < 1000 / MAX_PER_ACCOUNT_PER_SEC; k++) {
    repicks++
    i = picker.pick(Math.random())
  }
  lastAct[i] = now
  return i
}

/** Frames waiting in this slice's hosts for their slowest subscriber (max mode feeds only what the relay takes). */
function backlog(): number {
  let n = 0
  for (const h of hosts) n += h.backlog()
  return n
}

async function loop(): Promise<void> {
  for (;;) {
    const now = performance.now()
    let due: number
    if (maxMode) due = backlog() < 2000 ? 200 : 0
    else if (ratePerSec <= 0) due = 0
    else {
      due = Math.floor(((now - anchor) / 1000) * ratePerSec) - produced
      const cap = Math.max(1, Math.ceil(ratePerSec / 5))
      if (due > cap) {
        // The generator cannot keep up: count it, and do not bank the shortfall.
        behind += due - cap
        produced += due - cap
        due = cap
      }
    }
    const end = performance.now() + 50
    while (due > 0 && performance.now() < end) {
      const n = await act(pickAccount())
      produced += n
      due -= n
    }
    await new Promise((r) => setTimeout(r, due > 0 ? 0 : 10))
  }
}
void loop()

serveRpc(
  { hosts: hosts.map((h) => h.hostname), accounts: accounts.length, weight: picker.total },
  {
    rate: (a) => {
      ratePerSec = Number(a.perSec)
      maxMode = false
      anchor = performance.now()
      produced = 0
      return null
    },
    max: (a) => {
      maxMode = a.on === true
      return null
    },
    stats: () => {
      let open = 0
      let connections = 0
      let sent = 0
      for (const h of hosts) {
        open += h.open
        connections += h.connections
        sent += h.framesSent
      }
      const cpu = process.cpuUsage()
      return { ...counts, behind, repicks, open, connections, sent, backlog: backlog(), cpuSeconds: (cpu.user + cpu.system) / 1e6, rssMB: process.memoryUsage.rss() / 2 ** 20 }
    },
  },
  async () => {
    await Promise.all(hosts.map((h) => h.close()))
    wss.close()
  },
)
