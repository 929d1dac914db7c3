/** A small client for a running relay's admin API, used by the CLI. */

export class AdminClientError extends Error {
  override readonly name = 'AdminClientError'
}

export class AdminClient {
  private readonly auth: string

  constructor(
    private readonly baseUrl: string,
    password: string | undefined,
  ) {
    if (!password) throw new AdminClientError('RELAY_ADMIN_PASSWORD is not set: the admin API needs the relay admin password')
    this.auth = 'Basic ' + Buffer.from(`admin:${password}`).toString('base64')
  }

  get<T>(path: string): Promise<T> {
    return this.call<T>('GET', path)
  }

  post<T>(path: string, body: unknown): Promise<T> {
    return this.call<T>('POST', path, body)
  }

  private async call<T>(method: string, path: string, body?: unknown): Promise<T> {
    const url = new URL(`/admin/api/${path}`, this.baseUrl)
    let res: Response
    try {
      res = await fetch(url, {
        method,
        headers: { Authorization: this.auth, ...(body !== undefined ? { 'Content-Type': 'application/json' } : {}) },
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
        signal: AbortSignal.timeout(30_000),
      })
    } catch (err) {
      throw new AdminClientError(`cannot reach the relay at ${this.baseUrl}: ${describeFetchError(err)}`)
    }
    const data = (await res.json().catch(() => ({}))) as { error?: string; message?: string }
    if (res.status === 401) throw new AdminClientError('the relay refused the admin password (check RELAY_ADMIN_PASSWORD)')
    if (!res.ok) throw new AdminClientError(`${data.error ?? res.status}: ${data.message ?? res.statusText}`)
    return data as T
  }
}

/** Stops paging a remote relay whose cursor never ends (50 M hosts at 500 a page). */
const MAX_REMOTE_PAGES = 100_000

/** Pages through another relay's public listHosts. */
export async function* listRemoteHosts(relayUrl: string, pageSize = 500): AsyncGenerator<{ hostname: string; status?: string; seq?: number; accountCount?: number }> {
  if (!URL.canParse(relayUrl)) throw new AdminClientError(`not a URL: ${relayUrl}`)
  let cursor: string | undefined
  for (let page = 0; page < MAX_REMOTE_PAGES; page++) {
    const url = new URL('/xrpc/com.atproto.sync.listHosts', relayUrl)
    url.searchParams.set('limit', String(pageSize))
    if (cursor) url.searchParams.set('cursor', cursor)
    let res: Response
    try {
      res = await fetch(url, { signal: AbortSignal.timeout(30_000) })
    } catch (err) {
      throw new AdminClientError(`cannot reach ${relayUrl}: ${describeFetchError(err)}`)
    }
    if (!res.ok) throw new AdminClientError(`listHosts on ${relayUrl} failed: HTTP ${res.status}`)
    const data = (await res.json()) as { cursor?: string; hosts: { hostname: string; status?: string; seq?: number; accountCount?: number }[] }
    yield* data.hosts
    if (!data.cursor || data.hosts.length === 0) return
    cursor = data.cursor
  }
}

/** fetch() says only "fetch failed"; the cause has the useful part (ECONNREFUSED, a timeout …). */
function describeFetchError(err: unknown): string {
  const e = err as Error & { cause?: { code?: string; message?: string } }
  if (e.name === 'TimeoutError') return 'no answer within 30 s'
  return e.cause?.code ?? e.cause?.message ?? e.message
}
