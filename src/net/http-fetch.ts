/**
 * One bounded HTTP GET: overall timeout, body size limit, redirects followed by
 * hand so every hop is checked before it is requested.
 */
import type { IncomingHttpHeaders } from 'node:http'
import { request, type Dispatcher } from 'undici'
import { findNetGuardError, type NetGuardReason } from './net-guard.js'

export type FetchFailureReason =
  | NetGuardReason
  | 'timeout'
  | 'too_large'
  | 'too_many_redirects'
  | 'bad_redirect'
  | 'network'

export class FetchError extends Error {
  override readonly name = 'FetchError'
  /** The response's headers when the failure came after they arrived (body too large, cut or too slow). */
  readonly headers: IncomingHttpHeaders | undefined
  constructor(
    readonly reason: FetchFailureReason,
    message: string,
    options?: { cause?: unknown; headers?: IncomingHttpHeaders },
  ) {
    super(message, options)
    this.headers = options?.headers
  }
}

export interface FetchOptions {
  dispatcher: Dispatcher
  /** Throws (a NetGuardError) when a URL, first or redirected, may not be requested. */
  checkUrl?: (url: URL) => void
  accept?: string
  /** Further request headers (e.g. User-Agent). */
  headers?: Record<string, string>
  maxBytes: number
  /** Whole exchange, redirects included. */
  timeoutMs: number
  /** 0 = redirects are returned as responses, not followed. */
  maxRedirects: number
}

export interface FetchResult {
  status: number
  headers: IncomingHttpHeaders
  body: Buffer
  /** The URL that produced the final response. */
  url: URL
}

const REDIRECTS = new Set([301, 302, 303, 307, 308])

export async function fetchBounded(input: string | URL, opts: FetchOptions): Promise<FetchResult> {
  let url = new URL(input)
  const signal = AbortSignal.timeout(opts.timeoutMs)
  for (let hop = 0; ; hop++) {
    try {
      opts.checkUrl?.(url)
    } catch (err) {
      throw asFetchError(err, url)
    }
    let res: Dispatcher.ResponseData
    try {
      res = await request(url, {
        method: 'GET',
        dispatcher: opts.dispatcher,
        headers: { ...opts.headers, ...(opts.accept ? { accept: opts.accept } : {}) },
        signal,
        maxRedirections: 0,
      })
    } catch (err) {
      throw asFetchError(err, url, signal)
    }
    const location = res.headers.location
    if (REDIRECTS.has(res.statusCode) && opts.maxRedirects > 0) {
      discard(res.body)
      if (hop >= opts.maxRedirects) throw new FetchError('too_many_redirects', `more than ${opts.maxRedirects} redirects from ${String(input)}`)
      if (typeof location !== 'string' || location === '') throw new FetchError('bad_redirect', `redirect without Location from ${url.href}`)
      try {
        url = new URL(location, url)
      } catch {
        throw new FetchError('bad_redirect', `unparsable redirect ${JSON.stringify(location)} from ${url.href}`)
      }
      continue
    }
    const body = await readLimited(res, opts.maxBytes, url, signal)
    return { status: res.statusCode, headers: res.headers, body, url }
  }
}

async function readLimited(res: Dispatcher.ResponseData, maxBytes: number, url: URL, signal: AbortSignal): Promise<Buffer> {
  const { body, headers } = res
  const chunks: Buffer[] = []
  let size = 0
  try {
    for await (const chunk of body) {
      const buf = chunk as Buffer
      size += buf.length
      if (size > maxBytes) {
        discard(body)
        throw new FetchError('too_large', `response from ${url.host} exceeds ${maxBytes} bytes`, { headers })
      }
      chunks.push(buf)
    }
  } catch (err) {
    throw asFetchError(err, url, signal, headers)
  }
  return Buffer.concat(chunks, size)
}

/** Drops a body we will not read; its abort error has nobody to go to. */
function discard(body: Dispatcher.ResponseData['body']): void {
  body.on('error', () => undefined)
  body.destroy()
}

function asFetchError(err: unknown, url: URL, signal?: AbortSignal, headers?: IncomingHttpHeaders): FetchError {
  if (err instanceof FetchError) return err
  const guard = findNetGuardError(err)
  if (guard) return new FetchError(guard.reason, guard.message, { cause: err })
  const name = (err as { name?: string }).name ?? ''
  const code = (err as { code?: string }).code ?? ''
  const options = headers ? { cause: err, headers } : { cause: err }
  if (signal?.aborted || name === 'TimeoutError' || (code.startsWith('UND_ERR_') && code.includes('TIMEOUT'))) {
    return new FetchError('timeout', `request to ${url.host} timed out`, options)
  }
  return new FetchError('network', `request to ${url.host} failed: ${code || (err as Error).message}`, options)
}
