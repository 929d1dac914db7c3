/**
 * The splitter's forwarded sync API against a loopback stand-in for the upstream relay:
 * answers passed back as given (status, type, rate-limit headers), redirects not followed,
 * listRepos cached and coalesced, and every exchange bounded in time and size.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { MAX_PROXY_BODY_BYTES, type Splitter } from '../../src/splitter/index.js'
import { createPostgresDatabase } from '../helpers/db.js'
import { waitUntil } from '../helpers/wait.js'
import { startTestSplitter, splitterUrl } from './harness.js'

const cleanups: (() => Promise<unknown>)[] = []
afterAll(async () => {
  for (const fn of cleanups.reverse()) await fn().catch(() => undefined)
})

describe('splitter sync API forwarding', () => {
  let upstream: Server
  let splitter: Splitter
  const seen: { method: string; url: string; body: string; forwardedFor: string | undefined }[] = []
  let listRepos = 0
  let releaseList: (() => void) | undefined
  let bigBodyClosed = false

  beforeAll(async () => {
    upstream = createServer((req: IncomingMessage, res: ServerResponse) => {
      let body = ''
      req.on('data', (c: Buffer) => (body += c.toString()))
      req.on('end', () => {
        // The splitter's own subscription attempts land here too (no WebSocket upgrade): not proxy traffic.
        if ((req.url ?? '').includes('subscribeRepos')) {
          res.writeHead(404)
          res.end()
          return
        }
        seen.push({ method: req.method ?? '', url: req.url ?? '', body, forwardedFor: req.headers['x-forwarded-for'] as string | undefined })
        const path = (req.url ?? '').split('?')[0]
        if (path === '/xrpc/com.atproto.sync.getRepo') {
          res.writeHead(302, { location: 'https://pds.example.test/xrpc/com.atproto.sync.getRepo?did=did:plc:x' })
          res.end()
        } else if (path === '/xrpc/com.atproto.sync.listRepos') {
          listRepos++
          const answer = () => {
            res.writeHead(200, { 'content-type': 'application/json', 'ratelimit-limit': '3000', 'x-internal': 'secret' })
            res.end(JSON.stringify({ repos: [{ did: 'did:plc:x', head: 'bafy', rev: '3k', active: true }], n: listRepos }))
          }
          // The first call waits until the test lets it go, so concurrent misses overlap.
          if (listRepos === 1) releaseList = answer
          else answer()
        } else if (path === '/xrpc/com.atproto.sync.getRecord') {
          // Never answers: the splitter must give up on its own.
        } else if (path === '/xrpc/com.atproto.sync.getBlob') {
          res.writeHead(200, { 'content-type': 'application/octet-stream' })
          const chunk = Buffer.alloc(1 << 20)
          const write = () => {
            while (res.write(chunk)) if (res.writableLength > 8 << 20) break
          }
          res.on('drain', write)
          res.on('close', () => (bigBodyClosed = true))
          write()
        } else if (path === '/xrpc/com.atproto.sync.requestCrawl') {
          res.writeHead(200, { 'content-type': 'application/json' })
          res.end('{}')
        } else {
          res.writeHead(404, { 'content-type': 'application/json' })
          res.end(JSON.stringify({ error: 'RepoNotFound', message: 'no such repo' }))
        }
      })
    })
    await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve))
    cleanups.push(() => new Promise<void>((resolve) => (upstream.closeAllConnections(), upstream.close(() => resolve()))))
    const db = await createPostgresDatabase()
    cleanups.push(() => db.drop())
    splitter = await startTestSplitter({
      upstream: `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`,
      databaseUrl: db.url,
      env: { RELAY_SPLITTER_PROXY_TIMEOUT: '500ms', RELAY_SPLITTER_LIST_CACHE: '1h' },
    })
    cleanups.push(() => splitter.stop())
  }, 60_000)

  it('passes answers, errors and redirects back as the upstream gave them', async () => {
    const repo = await fetch(splitterUrl(splitter, '/xrpc/com.atproto.sync.getRepo?did=did:plc:x'), { redirect: 'manual' })
    expect(repo.status).toBe(302)
    expect(repo.headers.get('location')).toBe('https://pds.example.test/xrpc/com.atproto.sync.getRepo?did=did:plc:x')
    expect(seen.filter((s) => s.url.startsWith('/xrpc/com.atproto.sync.getRepo')).map((s) => s.url)).toEqual(['/xrpc/com.atproto.sync.getRepo?did=did:plc:x'])

    const missing = await fetch(splitterUrl(splitter, '/xrpc/com.atproto.sync.getLatestCommit?did=did:plc:y'))
    expect(missing.status).toBe(404)
    expect(await missing.json()).toEqual({ error: 'RepoNotFound', message: 'no such repo' })
    expect(seen.at(-1)?.forwardedFor).toMatch(/127\.0\.0\.1/)

    const crawl = await fetch(splitterUrl(splitter, '/xrpc/com.atproto.sync.requestCrawl'), {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ hostname: 'pds.example.test' }),
    })
    expect(crawl.status).toBe(200)
    expect(seen.at(-1)).toMatchObject({ method: 'POST', url: '/xrpc/com.atproto.sync.requestCrawl', body: '{"hostname":"pds.example.test"}' })
  })

  it('listRepos: concurrent misses share one upstream request, then the answer is reused', async () => {
    const path = '/xrpc/com.atproto.sync.listRepos?limit=10'
    const pending = [fetch(splitterUrl(splitter, path)), fetch(splitterUrl(splitter, path)), fetch(splitterUrl(splitter, path))]
    await waitUntil(() => releaseList !== undefined, 'the first listRepos to reach the upstream')
    releaseList!()
    const answers = await Promise.all(pending)
    for (const a of answers) {
      expect(a.status).toBe(200)
      expect(a.headers.get('ratelimit-limit')).toBe('3000')
      expect(a.headers.get('x-internal')).toBeNull()
      expect(((await a.json()) as { n: number }).n).toBe(1)
    }
    const again = await fetch(splitterUrl(splitter, path))
    expect(((await again.json()) as { n: number }).n).toBe(1)
    expect(listRepos).toBe(1)
    // Another query is another cache entry.
    const other = await fetch(splitterUrl(splitter, '/xrpc/com.atproto.sync.listRepos?limit=11'))
    expect(((await other.json()) as { n: number }).n).toBe(2)
  })

  it('an upstream that never answers is a 504; one that sends too much is cut off with a 502', async () => {
    const slow = await fetch(splitterUrl(splitter, '/xrpc/com.atproto.sync.getRecord?did=did:plc:x&collection=app.bsky.feed.post&rkey=3k'))
    expect(slow.status).toBe(504)
    expect(((await slow.json()) as { error: string }).error).toBe('UpstreamTimeout')

    const big = await fetch(splitterUrl(splitter, '/xrpc/com.atproto.sync.getBlob?did=did:plc:x&cid=bafy'))
    expect([502, 504]).toContain(big.status)
    const body = (await big.json()) as { error: string; message: string }
    if (big.status === 502) expect(body.message).toContain(String(MAX_PROXY_BODY_BYTES))
    await waitUntil(() => bigBodyClosed, 'the oversized upstream answer to be abandoned')
  })

  it('admin routes are not forwarded', async () => {
    const before = seen.length
    const res = await fetch(splitterUrl(splitter, '/xrpc/com.atproto.admin.getSubjectStatus?did=did:plc:x'))
    expect(res.status).toBe(501)
    const page = await fetch(splitterUrl(splitter, '/admin'))
    expect(page.status).toBe(404)
    expect(seen.length).toBe(before)
  })
})
