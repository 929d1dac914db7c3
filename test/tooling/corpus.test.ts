import { mkdtempSync, rmSync } from 'node:fs'
import { createServer, type Server } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import WebSocket from 'ws'
import { ensureCorpus, loadHostAccounts, loadHostFrames, type Corpus } from '../../bench/corpus/corpus.js'
import type { CorpusParams } from '../../bench/corpus/params.js'
import { FakeHostFleet } from '../../bench/fake-host-fleet.js'
import { parseDidKey } from '../../src/atproto/keys.js'
import { verifyCommitEvent, verifySyncEvent } from '../../src/atproto/verify.js'
import { parseDidDocument } from '../../src/identity/did-doc.js'
import { decodeFrame } from '../helpers/frames.js'

const TINY: Partial<CorpusParams> = { accounts: 20, hosts: 2, commitsPerAccount: 4, deepAccounts: 1, deepRecords: 60, basePort: 28940 }

describe('benchmark corpus', () => {
  const dir = mkdtempSync(join(tmpdir(), 'atrelay-corpus-'))
  let corpus: Corpus

  beforeAll(async () => {
    corpus = await ensureCorpus({ params: TINY, dir, workers: 0 })
  }, 60_000)
  afterAll(() => {
    rmSync(dir, { recursive: true, force: true })
  })

  it('generates once and reuses the corpus while parameters are unchanged', async () => {
    expect(corpus.generated).toBe(true)
    const again = await ensureCorpus({ params: TINY, dir, workers: 0 })
    expect(again.generated).toBe(false)
    expect(again.manifest.createdAt).toBe(corpus.manifest.createdAt)
    expect(corpus.manifest.params).toMatchObject(TINY)
    expect(corpus.manifest.hosts.map((h) => h.port)).toEqual([28940, 28941])
    expect(corpus.manifest.totals.accounts).toBe(20)
  })

  it('regenerates when the parameters change', async () => {
    const microDir = join(dir, 'micro')
    const micro: Partial<CorpusParams> = { accounts: 2, hosts: 1, commitsPerAccount: 1, deepAccounts: 0, basePort: 28950 }
    const first = await ensureCorpus({ params: micro, dir: microDir, workers: 0 })
    expect(first.generated).toBe(true)
    expect((await ensureCorpus({ params: micro, dir: microDir, workers: 0 })).generated).toBe(false)
    const changed = await ensureCorpus({ params: { ...micro, seed: 2 }, dir: microDir, workers: 0 })
    expect(changed.generated).toBe(true)
    expect(changed.manifest.params.seed).toBe(2)
    expect(changed.manifest.rotationKeyHex).not.toBe(first.manifest.rotationKeyHex)
  })

  it('stores per-host frames with seq 1..n in which every commit verifies and chains per account', () => {
    let commits = 0
    for (const host of corpus.manifest.hosts) {
      const frames = loadHostFrames(corpus, host)
      const accounts = new Map(loadHostAccounts(corpus, host).map((a) => [a.did, a]))
      expect(frames).toHaveLength(host.frames)
      const heads = new Map<string, { rev: string; data: string }>()
      const firstTypes = new Map<string, string[]>()
      frames.forEach((bytes, i) => {
        const { header, body } = decodeFrame(bytes)
        expect(body.seq).toBe(i + 1)
        const did = (header.t === '#commit' ? body.repo : body.did) as string
        const account = accounts.get(did)
        expect(account, `${did} belongs to host ${host.index}`).toBeDefined()
        const seen = firstTypes.get(did) ?? []
        if (seen.length < 4) firstTypes.set(did, [...seen, header.t as string])
        const key = parseDidKey(account!.signingKey)
        const prev = heads.get(did)
        if (header.t === '#commit') {
          const result = verifyCommitEvent(body, key, { strict: true, hasStoredHead: prev !== undefined })
          if (!result.ok) throw new Error(`seq ${i + 1}: ${result.reason} ${result.message}`)
          if (prev) {
            expect(result.facts.since).toBe(prev.rev)
            expect(Buffer.from(result.facts.prevData!).toString('hex')).toBe(prev.data)
          }
          heads.set(did, { rev: result.facts.rev, data: Buffer.from(result.facts.dataCid).toString('hex') })
          commits++
        } else if (header.t === '#sync') {
          expect(verifySyncEvent(body, key, { strict: true, hasStoredHead: true }).ok).toBe(true)
        }
      })
      for (const [did, types] of firstTypes) expect(types, did).toEqual(['#identity', '#account', '#commit', '#sync'])
      for (const account of accounts.values()) expect(heads.get(account.did)?.rev).toBe(account.rev)
    }
    expect(commits).toBe(corpus.manifest.totals.events.commit)
    expect(corpus.manifest.totals.records).toBeGreaterThanOrEqual(60)
  })

  it('mixes key types and record kinds', () => {
    const accounts = corpus.manifest.hosts.flatMap((h) => loadHostAccounts(corpus, h))
    expect(accounts.every((a) => a.plcOps[0]!.services.atproto_pds!.endpoint === `http://localhost:${corpus.manifest.hosts[a.host]!.port}`)).toBe(true)
    const paths = new Set<string>()
    for (const host of corpus.manifest.hosts) {
      for (const bytes of loadHostFrames(corpus, host)) {
        const { header, body } = decodeFrame(bytes)
        if (header.t !== '#commit') continue
        for (const op of body.ops as { action: string; path: string }[]) paths.add(`${op.action} ${op.path.split('/')[0]}`)
      }
    }
    expect(paths).toContain('create app.bsky.feed.post')
    expect(paths).toContain('create app.bsky.feed.like')
    expect(paths).toContain('create app.bsky.graph.follow')
  })

  describe('fleet', () => {
    let fleet: FakeHostFleet
    let blocker: Server

    beforeAll(async () => {
      // Occupy host 1's fixed port: the fleet must move it and re-point its DIDs.
      blocker = createServer()
      await new Promise<void>((resolve) => blocker.listen(28941, '127.0.0.1', resolve))
      fleet = await FakeHostFleet.start({ corpus })
    }, 30_000)
    afterAll(async () => {
      await fleet?.close()
      await new Promise<void>((resolve) => blocker.close(() => resolve()))
    })

    it('serves the fixed port when free and re-points DIDs when not; PLC documents follow', async () => {
      const [h0, h1] = fleet.hosts
      expect(h0!.pds.port).toBe(28940)
      expect(h0!.repointed).toBe(false)
      expect(h1!.repointed).toBe(true)
      expect(h1!.pds.port).not.toBe(28941)
      for (const h of fleet.hosts) {
        const account = loadHostAccounts(corpus, h.corpusHost)[0]!
        const identity = parseDidDocument(account.did, await fleet.plc.resolve(account.did))
        expect(identity).toMatchObject({ status: 'ok', pdsHost: h.pds.hostname })
      }
    })

    it('replays each host corpus to a subscriber without a cursor, in order', async () => {
      const h = fleet.hosts[1]!
      const expected = loadHostFrames(corpus, h.corpusHost)
      const received: Buffer[] = []
      const ws = new WebSocket(`${h.pds.wsUrl}/xrpc/com.atproto.sync.subscribeRepos`)
      try {
        await new Promise<void>((resolve, reject) => {
          ws.on('message', (data: Buffer) => {
            received.push(data)
            if (received.length === expected.length) resolve()
          })
          ws.once('error', reject)
        })
      } finally {
        ws.terminate()
      }
      expect(received.every((b, i) => b.equals(expected[i]!))).toBe(true)
      await fleet.hosts[1]!.pds.playbackDone()
      expect(h.pds.seq).toBe(expected.length)
      const status = await fetch(`${h.pds.url}/xrpc/com.atproto.sync.listRepos`)
      expect(((await status.json()) as { repos: unknown[] }).repos).toHaveLength(h.corpusHost.accounts)
    })
  })
})
