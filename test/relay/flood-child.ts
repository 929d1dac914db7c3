/**
 * A flood of concurrent HTTP requests from its own process, so the client's
 * work (connections, reading answers) does not run on the relay's event loop.
 * Reads `{ requests: [{ url, method?, body? }] }` on stdin, sends them all at
 * once (one connection each) and prints one answer per request as JSON.
 */
import { request } from 'node:http'

interface Spec {
  requests: { url: string; method?: string; body?: string }[]
}

interface Answer {
  status: number
  error?: string
  retryAfter: string | null
  rateLimit?: Record<string, string>
}

function send(r: Spec['requests'][number]): Promise<Answer> {
  return new Promise((resolve) => {
    const req = request(r.url, { method: r.method ?? 'GET', agent: false, headers: r.body ? { 'content-type': 'application/json' } : {} }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => {
        const status = res.statusCode ?? 0
        let error: string | undefined
        if (status !== 200) {
          try {
            error = (JSON.parse(Buffer.concat(chunks).toString('utf8')) as { error?: string }).error
          } catch {
            error = 'unparsable body'
          }
        }
        const retry = res.headers['retry-after']
        resolve({ status, ...(error ? { error } : {}), retryAfter: typeof retry === 'string' ? retry : null })
      })
      res.on('error', (err) => resolve({ status: 0, error: `response: ${err.message}`, retryAfter: null }))
    })
    req.on('error', (err: NodeJS.ErrnoException) => resolve({ status: 0, error: `request: ${err.code ?? err.message}`, retryAfter: null }))
    req.end(r.body)
  })
}

const chunks: Buffer[] = []
for await (const c of process.stdin) chunks.push(c as Buffer)
const spec = JSON.parse(Buffer.concat(chunks).toString('utf8')) as Spec
const answers = await Promise.all(spec.requests.map(send))
process.stdout.write(JSON.stringify(answers))
