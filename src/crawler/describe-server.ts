/**
 * The admission probe: `com.atproto.server.describeServer` must answer 200 with
 * a JSON object within a few seconds, through the SSRF-guarded dispatcher.
 * The response's Server header is returned so relay loops can be refused.
 */
import type { Dispatcher } from 'undici'
import { fetchBounded, FetchError, type FetchResult } from '../net/http-fetch.js'
import { assertPublicUrl, type HostPolicy } from '../net/net-guard.js'
import { USER_AGENT } from './upstream-dial.js'

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
  let res: FetchResult
  try {
    res = await fetchBounded(`${ssl ? 'https' : 'http'}://${hostname}/xrpc/com.atproto.server.describeServer`, {
      dispatcher: opts.dispatcher,
      checkUrl: (url) => assertPublicUrl(url, opts.policy),
      accept: 'application/json',
      headers: { 'user-agent': USER_AGENT },
      maxBytes: MAX_BODY,
      timeoutMs: opts.timeoutMs,
      // A PDS answers describeServer itself; a redirect is not followed.
      maxRedirects: 0,
    })
  } catch (err) {
    if (!(err instanceof FetchError)) throw err
    throw describeFailure(hostname, err, opts.timeoutMs)
  }
  const server = headerString(res.headers.server)
  if (res.status !== 200) {
    throw new DescribeServerError('status', `describeServer answered HTTP ${res.status}`, server)
  }
  let body: unknown
  try {
    body = JSON.parse(res.body.toString('utf8'))
  } catch {
    throw new DescribeServerError('not-json', 'describeServer did not answer JSON', server)
  }
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw new DescribeServerError('not-json', 'describeServer did not answer a JSON object', server)
  }
  return { server, body: body as Record<string, unknown> }
}

/** The bounded GET's failure in the probe's terms, keeping the Server header when a response had begun. */
function describeFailure(hostname: string, err: FetchError, timeoutMs: number): DescribeServerError {
  const server = headerString(err.headers?.server)
  switch (err.reason) {
    case 'timeout':
      return new DescribeServerError('timeout', `no answer within ${timeoutMs / 1000} s`, server)
    case 'too_large':
      return new DescribeServerError('too-large', `describeServer response over ${MAX_BODY} bytes`, server)
    case 'network':
    case 'too_many_redirects': // not followed (maxRedirects 0): listed so every reason is mapped
    case 'bad_redirect':
      return new DescribeServerError('network', err.message, server)
    default: // the SSRF guard refused the host or what its name resolves to
      return new DescribeServerError('forbidden', `${hostname} may not be contacted: ${err.message}`)
  }
}

function headerString(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value.join(', ') : value
}
