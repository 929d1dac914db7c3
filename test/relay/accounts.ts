/**
 * Hosts with real signed accounts for whole-relay tests, and the book-keeping
 * that lets a test say what the relay must (and must not) forward: every
 * legitimate event published is recorded per DID, every legitimate commit CID
 * is remembered, and the relay's output is checked against both.
 */
import { expect } from 'vitest'
import type { Relay } from '../../src/relay.js'
import { FakePds } from '../helpers/fake-pds.js'
import type { PdsEvent } from '../helpers/frames.js'
import { TestAccount } from '../helpers/repo-builder.js'
import { didDocument, linkOf, requestCrawl, type DidDocServer } from '../helpers/relay.js'
import { type FirehoseClient, type FirehoseEvent } from '../helpers/firehose-client.js'
import { waitUntil } from '../helpers/wait.js'

/** What identifies an event in the output: type plus the field that tells two of a kind apart. */
export function keyOfEvent(t: string, body: Record<string, unknown>): string {
  switch (t) {
    case '#commit':
      return `#commit:${linkOf(body.commit)}`
    case '#sync':
      return `#sync:${String(body.rev)}`
    case '#account':
      return `#account:${String(body.active)}:${typeof body.status === 'string' ? body.status : ''}`
    default:
      return t
  }
}

export class Ledger {
  /** DID → keys of its legitimate events in publication order. */
  readonly expected = new Map<string, string[]>()
  /** Every legitimately signed commit CID published anywhere. */
  readonly legitCommits = new Set<string>()
  /** DIDs whose output is checked for validity but not matched one by one (floods). */
  readonly unmatched = new Set<string>()

  /** Publishes legitimate events on `pds` and records them as owed to the output. */
  publish(pds: FakePds, ...events: PdsEvent[]): number[] {
    for (const e of events) {
      const did = (e.t === '#commit' ? e.body.repo : e.body.did) as string
      const list = this.expected.get(did) ?? []
      list.push(keyOfEvent(e.t, e.body))
      this.expected.set(did, list)
      if (e.t === '#commit') this.legitCommits.add(linkOf(e.body.commit)!)
    }
    return pds.publish(...events)
  }

  /** Waits until every recorded event is out, then checks per-account order exactly (nothing lost, duplicated or reordered). */
  async expectAllForwarded(reader: Pick<FirehoseClient, 'of'>, timeoutMs = 15_000): Promise<void> {
    const behind = () => {
      const late: string[] = []
      for (const [did, keys] of this.expected) if (reader.of(did).length < keys.length) late.push(`${did} ${reader.of(did).length}/${keys.length}`)
      return late
    }
    await waitUntil(() => behind().length === 0, () => `every legitimate event forwarded (behind: ${behind().join(', ')})`, timeoutMs)
    for (const [did, keys] of this.expected) {
      expect(reader.of(did).map((o) => keyOfEvent(o.t, o.body)), `output of ${did}`).toEqual(keys)
    }
  }

  /** Nothing invalid went out: commits all legitimate and unique, DIDs all known, relay seqs consecutive. */
  expectOutputValid(reader: FirehoseClient): void {
    const seen = new Set<string>()
    for (const o of reader.events) {
      expect(this.expected.has(o.did) || this.unmatched.has(o.did), `forwarded event of unknown ${o.did}`).toBe(true)
      if (o.t === '#commit') {
        const cid = linkOf(o.body.commit)!
        expect(this.legitCommits.has(cid), `forwarded commit ${cid} that no host legitimately produced`).toBe(true)
        expect(seen.has(cid), `commit ${cid} forwarded twice`).toBe(false)
        seen.add(cid)
      }
    }
    const seqs = reader.events.map((o: FirehoseEvent) => o.seq)
    expect(seqs).toEqual(seqs.map((_, i) => (seqs[0] ?? 0) + i))
    expect(reader.errors).toEqual([])
  }
}

export interface TestHost {
  pds: FakePds
  accounts: TestAccount[]
}

/**
 * A fake host with `count` accounts registered in the PLC (PDS = the host),
 * crawled by the relay and connected; genesis events published unless told not to.
 */
/** Where a host's accounts get their DID documents: the loopback PLC, or a `DidDocServer` via `servedBy`. */
export interface DidRegistry {
  register(account: TestAccount): Promise<void>
}

/** Serves an account's document (current key, handle and PDS) from a `DidDocServer`. */
export function servedBy(docs: DidDocServer): DidRegistry {
  return {
    async register(account) {
      const key = { type: 'Multikey', publicKeyMultibase: account.signingKey.did().replace(/^did:key:/, '') }
      docs.docs.set(account.did, didDocument(account.did, account.handle, key, account.pdsUrl))
    },
  }
}

export async function startHost(
  relay: Relay,
  plc: DidRegistry,
  handles: Map<string, string>,
  ledger: Ledger,
  opts: { accounts?: number; genesis?: boolean } = {},
): Promise<TestHost> {
  const pds = await FakePds.start()
  const accounts: TestAccount[] = []
  for (let i = 0; i < (opts.accounts ?? 1); i++) {
    const account = await TestAccount.create({ pdsUrl: pds.url })
    await plc.register(account)
    handles.set(account.handle, account.did)
    accounts.push(account)
  }
  await requestCrawl(relay, pds.hostname)
  await waitUntil(() => pds.openConnections === 1, `the relay to subscribe to ${pds.hostname}`)
  if (opts.genesis !== false) {
    for (const account of accounts) {
      // The PDS's #sync right after genesis repeats the commit's rev: a no-op a relay drops, so not published here.
      ledger.publish(pds, ...(await account.genesis()).filter((e) => e.t !== '#sync'))
    }
  }
  return { pds, accounts }
}

let postCounter = 0

/** A real signed commit creating one post. */
export function post(account: TestAccount) {
  return account.createRecord('app.bsky.feed.post', { $type: 'app.bsky.feed.post', text: `post ${++postCounter}`, createdAt: new Date().toISOString() })
}

/** The well-behaved host keeps committing (round robin over its accounts) until stopped. */
export function streamCommits(
  host: TestHost,
  ledger: Ledger,
  opts: { intervalMs?: number; min?: number; max?: number; /** every 3rd event an #identity or #account instead of a commit */ mixed?: boolean } = {},
): { stop(): Promise<number> } {
  let running = true
  let published = 0
  const min = opts.min ?? 4
  const max = opts.max ?? 400
  const loop = (async () => {
    while ((running || published < min) && published < max) {
      const account = host.accounts[published % host.accounts.length]!
      const turn = Math.floor(published / host.accounts.length)
      if (opts.mixed && turn % 3 === 1) ledger.publish(host.pds, turn % 2 === 0 ? account.identityEvent() : account.accountEvent(true))
      else ledger.publish(host.pds, await post(account))
      published++
      await new Promise((r) => setTimeout(r, opts.intervalMs ?? 30))
    }
  })()
  return {
    async stop() {
      running = false
      await loop
      return published
    },
  }
}
