/**
 * `com.atproto.repo.describeRepo` on an account's PDS, for its `collections`:
 * SSRF-guarded, size- and time-bounded, no redirects. Every failure is a typed
 * `DescribeRepoError` with a reason (the backfill counts them and retries later).
 */
import type { Dispatcher } from 'undici'
import { isValidNsid } from '../atproto/syntax.js'
import { fetchBounded, FetchError } from '../net/http-fetch.js'
import { assertPublicUrl, type HostPolicy } from '../net/net-guard.js'
import { clipUpstreamText } from '../upstream-text.js'

export type DescribeRepoFailure = 'network' | 'timeout' | 'forbidden' | 'status' | 'not-json' | 'bad-answer' | 'too-large'

export class DescribeRepoError extends Error {
  override readonly name = 'DescribeRepoError'
  constructor(
    readonly reason: DescribeRepoFailure,
    message: string,
  ) {
    super(message)
  }
}

/** A describeRepo answer is the DID document plus the collection list: generous for repos with many collections. */
const MAX_RESPONSE_BYTES = 1024 * 1024
/** Collections kept from one answer; a real repo has tens. */
export const MAX_COLLECTIONS_PER_REPO = 1_000

export interface DescribeRepoOptions {
  dispatcher: Dispatcher
  policy: HostPolicy
  timeoutMs: number
  userAgent: string
}

/** The account's collections as its PDS lists them (valid NSIDs only, deduplicated). */
export async function describeRepoCollections(hostname: string, ssl: boolean, did: string, opts: DescribeRepoOptions): Promise<string[]> {
  const url = new URL(`${ssl ? 'https' : 'http'}://${hostname}/xrpc/com.atproto.repo.describeRepo`)
  url.searchParams.set('repo', did)
  let status: number
  let body: Buffer
  try {
    const res = await fetchBounded(url, {
      dispatcher: opts.dispatcher,
      checkUrl: (u) => assertPublicUrl(u, opts.policy),
      accept: 'application/json',
      headers: { 'user-agent': opts.userAgent },
      maxBytes: MAX_RESPONSE_BYTES,
      timeoutMs: opts.timeoutMs,
      maxRedirects: 0,
    })
    status = res.status
    body = res.body
  } catch (err) {
    if (!(err instanceof FetchError)) throw err
    const reason: DescribeRepoFailure =
      err.reason === 'timeout' ? 'timeout' : err.reason === 'too_large' ? 'too-large' : err.reason === 'network' || err.reason === 'too_many_redirects' || err.reason === 'bad_redirect' ? 'network' : 'forbidden'
    throw new DescribeRepoError(reason, err.message)
  }
  let json: unknown
  try {
    json = JSON.parse(body.toString('utf8'))
  } catch {
    throw new DescribeRepoError(status === 200 ? 'not-json' : 'status', `describeRepo answered HTTP ${status}, not JSON`)
  }
  if (status !== 200) {
    const error = typeof (json as { error?: unknown })?.error === 'string' ? clipUpstreamText((json as { error: string }).error) : ''
    throw new DescribeRepoError('status', `describeRepo answered HTTP ${status}${error ? ` ${error}` : ''}`)
  }
  const { did: answered, collections } = (json ?? {}) as Record<string, unknown>
  if (answered !== did) throw new DescribeRepoError('bad-answer', 'describeRepo answered for another DID')
  if (!Array.isArray(collections)) throw new DescribeRepoError('bad-answer', 'describeRepo has no collections array')
  const out = new Set<string>()
  for (const c of collections) {
    if (typeof c === 'string' && c.length <= 317 && isValidNsid(c)) out.add(c)
    if (out.size >= MAX_COLLECTIONS_PER_REPO) break
  }
  return [...out]
}
