import { sql } from 'kysely'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { HttpServer } from '../../src/api/http-server.js'
import { registerSyncQueries } from '../../src/api/sync-queries.js'
import { cidForCbor, cidToString } from '../../src/atproto/cid.js'
import { HostStats } from '../../src/stats/host-stats.js'
import { createLogger } from '../../src/logger.js'
import { Registry } from 'prom-client'
import { createTestDatabase, type TestDatabase } from '../helpers/db.js'

const DID = (n: number) => `did:plc:${'x'.repeat(22)}${String.fromCharCode(97 + Math.floor(n / 26), 97 + (n % 26))}`
const cid = (n: number) => cidForCbor(new Uint8Array([n & 255, n >> 8]))

describe('sync query API', () => {
  let t: TestDatabase
  let http: HttpServer
  let base: string
  let stats: HostStats
  const ids: Record<string, number> = {}

  const get = (path: string) => fetch(`${base}/xrpc/${path}`, { redirect: 'manual' })
  const json = async (path: string) => {
    const res = await get(path)
    return { status: res.status, body: (await res.json()) as Record<string, any>, headers: res.headers }
  }

  beforeAll(async () => {
    t = await createTestDatabase('postgres')
    const { db } = t.storage
    const pds = await db.insertInto('host').values({ hostname: 'pds.example.com', account_limit: 100, account_count: 4 }).returning('id').executeTakeFirstOrThrow()
    const dev = await db.insertInto('host').values({ hostname: 'localhost:2583', ssl: false, account_limit: 5, cursor: 77, status: 'offline', last_error: 'connection refused' }).returning('id').executeTakeFirstOrThrow()
    ids.pds = pds.id
    ids.dev = dev.id
    const accounts: [string, number, string, string, boolean][] = [
      ['active', pds.id, 'active', 'active', true],
      ['takendown', pds.id, 'takendown', 'active', true],
      ['deactivated', pds.id, 'active', 'deactivated', true],
      ['suspended', pds.id, 'active', 'suspended', true],
      ['nohead', pds.id, 'active', 'active', false],
      ['devactive', dev.id, 'active', 'active', true],
      ['throttled', dev.id, 'throttled', 'active', false],
    ]
    let n = 1
    for (const [name, host, local, upstream, head] of accounts) {
      const a = await db
        .insertInto('account')
        .values({ did: DID(n), host_id: host, local_status: local as any, upstream_status: upstream as any })
        .returning('id')
        .executeTakeFirstOrThrow()
      ids[name] = a.id
      if (head) await db.insertInto('account_head').values({ account_id: a.id, rev: `3lhhxizu5wr${n}d`.slice(0, 13), commit_cid: cid(n), data_cid: cid(1000 + n) }).execute()
      n++
    }
    // the active account's recent commits in the event log
    await sql`create table event_api_p1 partition of event for values from (1) to (1000000)`.execute(db)
    for (let i = 1; i <= 5; i++)
      await db.insertInto('event').values({ seq: i * 10, account_id: ids.active!, kind: 1, frame: new Uint8Array([i]), commit_cid: cid(500 + i) }).execute()
    await db.insertInto('event').values({ seq: 15, account_id: ids.active!, kind: 3, frame: new Uint8Array([0]), commit_cid: null }).execute()

    stats = new HostStats(new Registry())
    stats.received('pds.example.com', '#commit')
    stats.accepted('pds.example.com', '#commit')
    stats.dropped('pds.example.com', 'bad-signature')
    http = new HttpServer(createLogger('silent'))
    registerSyncQueries(http, { storage: t.storage, stats })
    const addr = await http.listen({ host: '127.0.0.1', port: 0 })
    base = `http://127.0.0.1:${addr.port}`
  })

  afterAll(async () => {
    await http?.close()
    await t?.cleanup()
  })

  it('getLatestCommit: head, statuses, unknown, no head, bad params', async () => {
    expect(await json(`com.atproto.sync.getLatestCommit?did=${DID(1)}`)).toMatchObject({ status: 200, body: { cid: cidToString(cid(1)), rev: expect.any(String) } })
    expect((await json(`com.atproto.sync.getLatestCommit?did=${DID(2)}`)).body.error).toBe('RepoTakendown')
    expect((await json(`com.atproto.sync.getLatestCommit?did=${DID(3)}`)).body.error).toBe('RepoDeactivated')
    expect((await json(`com.atproto.sync.getLatestCommit?did=${DID(4)}`)).body.error).toBe('RepoSuspended')
    expect((await json(`com.atproto.sync.getLatestCommit?did=${DID(5)}`)).body.error).toBe('RepoNotSynchronized')
    expect((await json(`com.atproto.sync.getLatestCommit?did=${DID(99)}`)).body.error).toBe('RepoNotFound')
    const missing = await json('com.atproto.sync.getLatestCommit')
    expect(missing).toMatchObject({ status: 400, body: { error: 'InvalidRequest', message: expect.stringContaining('did') } })
    const bad = await json('com.atproto.sync.getLatestCommit?did=not-a-did')
    expect(bad).toMatchObject({ status: 400, body: { error: 'InvalidRequest', message: expect.stringContaining('"did"') } })
    expect(bad.headers.get('access-control-allow-origin')).toBe('*')
  })

  it('getHead (2023): root or HeadNotFound', async () => {
    expect(await json(`com.atproto.sync.getHead?did=${DID(1)}`)).toMatchObject({ status: 200, body: { root: cidToString(cid(1)) } })
    expect((await json(`com.atproto.sync.getHead?did=${DID(5)}`)).body.error).toBe('HeadNotFound')
    expect((await json(`com.atproto.sync.getHead?did=${DID(99)}`)).body.error).toBe('HeadNotFound')
  })

  it('getRepoStatus: combined status, rev only when active', async () => {
    const active = await json(`com.atproto.sync.getRepoStatus?did=${DID(1)}`)
    expect(active.body).toEqual({ did: DID(1), active: true, rev: expect.any(String) })
    expect((await json(`com.atproto.sync.getRepoStatus?did=${DID(2)}`)).body).toEqual({ did: DID(2), active: false, status: 'takendown' })
    expect((await json(`com.atproto.sync.getRepoStatus?did=${DID(7)}`)).body).toEqual({ did: DID(7), active: false, status: 'throttled' })
    expect((await json(`com.atproto.sync.getRepoStatus?did=${DID(99)}`)).body.error).toBe('RepoNotFound')
  })

  it('listRepos: pages without repeats or gaps, even while accounts are added', async () => {
    const seen: string[] = []
    let cursor: string | undefined
    let pages = 0
    do {
      const res = await json(`com.atproto.sync.listRepos?limit=2${cursor ? `&cursor=${cursor}` : ''}`)
      expect(res.status).toBe(200)
      for (const repo of res.body.repos) {
        expect(repo).toMatchObject({ did: expect.any(String), head: expect.stringMatching(/^bafyrei/), rev: expect.any(String), active: expect.any(Boolean) })
        seen.push(repo.did)
      }
      if (pages === 0) {
        // an account added mid-pagination shows up at the end, shifting nothing
        const a = await t.storage.db.insertInto('account').values({ did: DID(8), host_id: ids.pds! }).returning('id').executeTakeFirstOrThrow()
        await t.storage.db.insertInto('account_head').values({ account_id: a.id, rev: '3lhhxizu5wr8d', commit_cid: cid(8), data_cid: cid(9) }).execute()
      }
      cursor = res.body.cursor
      pages++
    } while (cursor && pages < 10)
    expect(seen).toEqual([DID(1), DID(2), DID(3), DID(4), DID(6), DID(8)])
    expect(new Set(seen).size).toBe(seen.length)
    const takendown = (await json(`com.atproto.sync.listRepos?limit=1000`)).body.repos.find((r: any) => r.did === DID(2))
    expect(takendown).toMatchObject({ active: false, status: 'takendown' })
    expect((await json('com.atproto.sync.listRepos?limit=0')).status).toBe(400)
    expect((await json('com.atproto.sync.listRepos?limit=1001')).status).toBe(400)
    expect((await json('com.atproto.sync.listRepos?cursor=xyz')).status).toBe(400)
  })

  it('listHosts and getHostStatus', async () => {
    const first = await json('com.atproto.sync.listHosts?limit=1')
    expect(first.body.hosts).toEqual([{ hostname: 'pds.example.com', seq: 0, accountCount: 4, status: 'active' }])
    const second = await json(`com.atproto.sync.listHosts?limit=1&cursor=${first.body.cursor}`)
    expect(second.body.hosts).toEqual([{ hostname: 'localhost:2583', seq: 77, accountCount: 0, status: 'offline' }])
    expect(second.body.cursor).toBeUndefined()

    const status = await json('com.atproto.sync.getHostStatus?hostname=pds.example.com')
    expect(status.body).toMatchObject({
      hostname: 'pds.example.com',
      accountCount: 4,
      status: 'active',
      accountLimit: 100,
      throttledAccounts: 0,
      events: { received: 1, accepted: 1, dropped: { 'bad-signature': 1 } },
    })
    const dev = await json('com.atproto.sync.getHostStatus?hostname=LOCALHOST:2583')
    expect(dev.body).toMatchObject({ seq: 77, status: 'offline', throttledAccounts: 1, lastError: { message: 'connection refused' } })
    expect(await json('com.atproto.sync.getHostStatus?hostname=nope.example.com')).toMatchObject({ status: 404, body: { error: 'HostNotFound' } })
    expect((await json('com.atproto.sync.getHostStatus')).body.error).toBe('InvalidRequest')
  })

  it('redirects repo data to the PDS after the relay checks, keeping the query', async () => {
    const repo = await get(`com.atproto.sync.getRepo?did=${DID(1)}&since=3lhhxizu5wr2d`)
    expect(repo.status).toBe(302)
    expect(repo.headers.get('location')).toBe(`https://pds.example.com/xrpc/com.atproto.sync.getRepo?did=${encodeURIComponent(DID(1))}&since=3lhhxizu5wr2d`)
    const dev = await get(`com.atproto.sync.getRepo?did=${DID(6)}`)
    expect(dev.headers.get('location')).toMatch(/^http:\/\/localhost:2583\/xrpc\/com\.atproto\.sync\.getRepo\?/)

    const c = cidToString(cid(1))
    const cases: [string, string][] = [
      [`getRecord?did=${DID(1)}&collection=app.bsky.feed.post&rkey=3lhhxizu5wr2d`, 'com.atproto.sync.getRecord'],
      [`getBlocks?did=${DID(1)}&cids=${c}&cids=${c}`, 'com.atproto.sync.getBlocks'],
      [`getBlob?did=${DID(1)}&cid=${c}`, 'com.atproto.sync.getBlob'],
      [`listBlobs?did=${DID(1)}&limit=10`, 'com.atproto.sync.listBlobs'],
    ]
    for (const [path, nsid] of cases) {
      const res = await get(`com.atproto.sync.${path}`)
      expect(res.status, path).toBe(302)
      const location = new URL(res.headers.get('location')!)
      expect(location.host).toBe('pds.example.com')
      expect(location.pathname).toBe(`/xrpc/${nsid}`)
      expect(location.search).toBe('?' + path.split('?')[1]!.replace(/:/g, '%3A'))
    }
    // 2023 getCheckout → the PDS's getRepo
    const checkout = await get(`com.atproto.sync.getCheckout?did=${DID(1)}`)
    expect(checkout.headers.get('location')).toBe(`https://pds.example.com/xrpc/com.atproto.sync.getRepo?did=${encodeURIComponent(DID(1))}`)

    // relay checks first
    expect((await json(`com.atproto.sync.getRepo?did=${DID(2)}`)).body.error).toBe('RepoTakendown')
    expect((await json(`com.atproto.sync.getRepo?did=${DID(99)}`)).body.error).toBe('RepoNotFound')
    expect((await json(`com.atproto.sync.getRepo?did=${DID(1)}&since=bad`)).body).toMatchObject({ error: 'InvalidRequest', message: expect.stringContaining('since') })
    expect((await json(`com.atproto.sync.getRecord?did=${DID(1)}&collection=app.bsky.feed.post`)).body.message).toContain('rkey')
    expect((await json(`com.atproto.sync.getBlocks?did=${DID(1)}`)).body.message).toContain('cids')
    expect((await json(`com.atproto.sync.getBlob?did=${DID(1)}&cid=nope`)).body.message).toContain('cid')
  })

  it('getCommitPath (2023): commits in the window, honouring earliest and latest', async () => {
    const all = (await json(`com.atproto.sync.getCommitPath?did=${DID(1)}`)).body.commits
    expect(all).toEqual([1, 2, 3, 4, 5].map((i) => cidToString(cid(500 + i))))
    const mid = await json(`com.atproto.sync.getCommitPath?did=${DID(1)}&earliest=${all[1]}&latest=${all[3]}`)
    expect(mid.body, JSON.stringify(mid.body)).toEqual({ commits: all.slice(1, 4) })
    expect((await json(`com.atproto.sync.getCommitPath?did=${DID(1)}&earliest=${cidToString(cid(1))}`)).body.error).toBe('InvalidRequest')
    expect((await json(`com.atproto.sync.getCommitPath?did=${DID(6)}`)).body.commits).toEqual([])
    expect((await json(`com.atproto.sync.getCommitPath?did=${DID(2)}`)).body.error).toBe('RepoTakendown')
  })

  it('rejects the wrong HTTP method for a query', async () => {
    const res = await fetch(`${base}/xrpc/com.atproto.sync.listRepos`, { method: 'POST' })
    expect(res.status).toBe(400)
    expect(((await res.json()) as any).error).toBe('InvalidRequest')
  })
})
