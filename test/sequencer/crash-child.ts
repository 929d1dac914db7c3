/**
 * A relay-like producer for the crash test: commits events as fast as it can
 * through a real Sequencer on Postgres and prints one line per acknowledged
 * event ("ack <seq> <upstreamSeq>"), until it is killed.
 *
 * argv: <databaseUrl> <hostId> <accountIds comma-separated> <firstUpstreamSeq>
 */
import { Registry } from 'prom-client'
import { Sequencer } from '../../src/sequencer/sequencer.js'
import { openStorage } from '../../src/storage/db.js'
import { commitEvent, rev, silentLogger } from './helpers.js'

const [url, hostArg, accountsArg, firstArg] = process.argv.slice(2)
if (!url || !hostArg || !accountsArg || !firstArg) throw new Error('usage: crash-child <url> <hostId> <accountIds> <firstUpstreamSeq>')
const hostId = Number(hostArg)
const accounts = accountsArg.split(',').map(Number)
let upstream = Number(firstArg)

const storage = await openStorage({ dataDir: '', databaseUrl: url, poolSize: 4 })
const sequencer = new Sequencer({
  storage,
  initialSeq: 1,
  partitionSize: 500,
  maxBatchEvents: 200,
  maxBatchDelayMs: 2,
  retentionIntervalMs: 0,
  logger: silentLogger,
  registry: new Registry(),
})
await sequencer.start()
process.stdout.write(`started ${sequencer.currentSeq()}\n`)

const IN_FLIGHT = 600
let inFlight = 0
function pump(): void {
  while (inFlight < IN_FLIGHT) {
    const n = upstream++
    // One account per upstream seq, round-robin; its rev encodes the upstream seq.
    const k = n % accounts.length
    inFlight++
    sequencer
      .submit(commitEvent(accounts[k]!, `did:plc:crash${k}`, rev(n), { padding: 1500, ticket: sequencer.openTicket(hostId, n) }))
      .then((seq) => {
        // Printed only after the commit: the parent treats every printed seq as acknowledged.
        process.stdout.write(`ack ${seq} ${n}\n`)
        inFlight--
        setImmediate(pump)
      })
      .catch((err: unknown) => {
        process.stderr.write(`submit failed: ${String(err)}\n`)
        process.exit(2)
      })
  }
}
pump()
