/**
 * Child process: one client bursting HTTP requests at the relay, all at once
 * (one socket each), from its own loopback source address so the relay sees it
 * as a client apart from the bench's health polls and honest consumer. Reads
 * every answer to the end and prints one JSON line of counts.
 *
 *   node --import tsx bench/attacks/burst-child.ts '{"url":"http://127.0.0.1:2470","localAddress":"127.0.0.2","timeoutMs":60000,
 *     "requests":[{"method":"GET","path":"/xrpc/…"}] | "repeat":{"count":2000,"method":"GET","path":"/xrpc/…"}}'
 */
import { Agent, request, type ClientRequest } from 'node:http'
import { percentile } from './monitor.js'

interface Req {
  method: 'GET' | 'POST'
  path: string
  body?: unknown
}

interface Args {
  url: string
  localAddress?: string
  timeoutMs: number
  requests?: Req[]
  repeat?: Req & { count: number }
}

export interface BurstResult {
  requests: number
  /** HTTP status → count (429 included; see rateLimited) */
  byStatus: Record<string, number>
  rateLimited: number
  serverErrors: number
  /** no answer: error code (ECONNRESET, ECONNREFUSED, …) → count */
  errors: Record<string, number>
  /** no answer within timeoutMs of the burst's start (or the socket idle that long) */
  timedOut: number
  /** XRPC `error` names of non-2xx answers → count */
  xrpcErrors: Record<string, number>
  seconds: number
  p50Ms: number
  p99Ms: number
  maxMs: number
  responseMB: number
}

const args = JSON.parse(process.argv[2] ?? '{}') as Args
const reqs: Req[] = args.requests ?? Array.from({ length: args.repeat?.count ?? 0 }, () => args.repeat!)
const agent = new Agent({ keepAlive: false, maxSockets: Infinity })
const base = new URL(args.url)
const result: BurstResult = { requests: reqs.length, byStatus: {}, rateLimited: 0, serverErrors: 0, errors: {}, timedOut: 0, xrpcErrors: {}, seconds: 0, p50Ms: 0, p99Ms: 0, maxMs: 0, responseMB: 0 }
const inc = (m: Record<string, number>, k: string) => (m[k] = (m[k] ?? 0) + 1)
const times: number[] = []
let bytes = 0
/** Requests not yet closed → how to count them as timed out. */
const pending = new Map<ClientRequest, () => void>()

function one(r: Req): Promise<void> {
  const body = r.body === undefined ? undefined : Buffer.from(JSON.stringify(r.body))
  const start = performance.now()
  return new Promise<void>((resolve) => {
    // The first outcome of a request is the one counted.
    let done = false
    const finish = (count: () => void) => {
      if (done) return
      done = true
      count()
      resolve()
    }
    const req = request(
      {
        agent,
        host: base.hostname,
        port: base.port,
        method: r.method,
        path: r.path,
        ...(args.localAddress ? { localAddress: args.localAddress } : {}),
        headers: body ? { 'content-type': 'application/json', 'content-length': body.length } : {},
        timeout: args.timeoutMs,
      },
      (res) => {
        const status = res.statusCode ?? 0
        const chunks: Buffer[] = []
        res.on('data', (c: Buffer) => {
          bytes += c.length
          if (status >= 300 && chunks.length < 4) chunks.push(c)
        })
        res.on('end', () =>
          finish(() => {
            times.push(performance.now() - start)
            inc(result.byStatus, String(status))
            if (status === 429) result.rateLimited++
            if (status >= 500) result.serverErrors++
            if (status < 300) return
            let name = 'non-JSON'
            try {
              name = String((JSON.parse(Buffer.concat(chunks).toString()) as { error?: string }).error)
            } catch {
              // counted as non-JSON
            }
            inc(result.xrpcErrors, name)
          }),
        )
        res.on('error', (err: NodeJS.ErrnoException) => finish(() => inc(result.errors, err.code ?? err.message)))
      },
    )
    pending.set(req, () => finish(() => result.timedOut++))
    req.on('close', () => pending.delete(req))
    req.on('timeout', () => giveUp(req))
    req.on('error', (err: NodeJS.ErrnoException) => finish(() => inc(result.errors, err.code ?? err.message)))
    req.end(body)
  })
}

function giveUp(req: ClientRequest): void {
  pending.get(req)?.()
  req.destroy()
}

const t0 = performance.now()
// `timeout` above is per socket (no byte for that long); this bounds the whole burst.
const cap = setTimeout(() => [...pending.keys()].forEach(giveUp), args.timeoutMs)
await Promise.all(reqs.map(one))
clearTimeout(cap)
result.seconds = Math.round((performance.now() - t0) / 100) / 10
times.sort((a, b) => a - b)
result.p50Ms = Math.round(percentile(times, 50))
result.p99Ms = Math.round(percentile(times, 99))
result.maxMs = Math.round(times[times.length - 1] ?? NaN)
result.responseMB = Math.round(bytes / 1e5) / 10
console.log(JSON.stringify(result))
process.exit(0)
