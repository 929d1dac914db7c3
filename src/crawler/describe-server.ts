/**
 * The admission probe: `com.atproto.server.describeServer` must answer 200 with
 * a JSON object within a few seconds, through the SSRF-guarded dispatcher.
 * The response's Server header is returned so relay loops can be refused.
 */
import { request, type Dispatcher } from 'undici'
import { assertPublicUrl, findNetGuardError, type HostPolicy } from '../identity/net-guard.js'
import { USER_AGENT } from './host-connection.js'

export type DescribeFailureReason = 'forbidden' | 'timeout' | 'network' | 'status' | 'not-json' | 'too-large'

export class DescribeServerError extends Error {
  override readonly name = 'DescribeServerError'
  constructor(
    readonly reason: DescribeFailureReason,
    message: string,
    /** The response's Server header, when there was a response. */
    readonly server?: string,
  ) {
    super(message)
  }
}

export interface DescribeServerResult {
  server: string | undefined
  body: Record<string, unknown>
}

const MAX_BODY = 64 * 1024

export interface DescribeServerOptions {
  dispatcher: Dispatcher
  policy: HostPolicy
  timeoutMs: number
}

export async function describeServer(hostname: string, ssl: boolean, opts: DescribeServerOptions): Promise<DescribeServerResult> {
  const url = new URL(`${ssl ? 'https' : 'http'}://${hostname}/xrpc/com.atproto.server.describeServer`)
  try {
    assertPublicUrl(url, opts.policy)
  } catch (err) {
    throw new DescribeServerError('forbidden', `${hostname} may not be contacted: ${(err as Error).message}`)
  }
  const signal = AbortSignal.timeout(opts.timeoutMs)
  let res: Dispatcher.ResponseData
  try {
    res = await request(url, {
      method: 'GET',
      dispatcher: opts.dispatcher,
      headers: { accept: 'application/json', 'user-agent': USER_AGENT },
      signal,
      // A PDS answers describeServer itself; a redirect is not followed.
      maxRedirections: 0,
    })
  } catch (err) {
    const guard = findNetGuardError(err)
    if (guard) throw new DescribeServerError('forbidden', `${hostname} may not be contacted: ${guard.message}`)
    if (signal.aborted) throw new DescribeServerError('timeout', `no answer within ${opts.timeoutMs / 1000} s`)
    const code = (err as { code?: string }).code
    throw new DescribeServerError('network', `request failed: ${code ?? (err as Error).message}`)
  }
  const server = headerString(res.headers.server)
  let text: string
  try {
    text = await readLimited(res.body)
  } catch (err) {
    if (err instanceof DescribeServerError) throw new DescribeServerError(err.reason, err.message, server)
    throw new DescribeServerError(signal.aborted ? 'timeout' : 'network', `reading the response failed: ${(err as Error).message}`, server)
  }
  if (res.statusCode !== 200) {
    throw new DescribeServerError('status', `describeServer answered HTTP ${res.statusCode}`, server)
  }
  let body: unknown
  try {
    body = JSON.parse(text)
  } catch {
    throw new DescribeServerError('not-json', 'describeServer did not answer JSON', server)
  }
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw new DescribeServerError('not-json', 'describeServer did not answer a JSON object', server)
  }
  return { server, body: body as Record<string, unknown> }
}

function headerString(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value.join(', ') : value
}

async function readLimited(body: Dispatcher.ResponseData['body']): Promise<string> {
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of body) {
    size += (chunk as Buffer).length
    if (size > MAX_BODY) {
      body.destroy()
      throw new DescribeServerError('too-large', `describeServer response over ${MAX_BODY} bytes`)
    }
    chunks.push(chunk as Buffer)
  }
  return Buffer.concat(chunks).toString('utf8')
}
