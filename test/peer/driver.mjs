// Drives a real PDS through its XRPC API with plain fetch, and records the firehose events
// each action is expected to produce (per PDS, per account, in order).
//
// No @atproto imports: this file can be imported from the relay's own test suite.
// Every request goes to the URLs the peer printed (loopback only).

const TINY_PNG = Buffer.from(
  'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==',
  'base64',
)

export class XrpcError extends Error {
  /**
   * @param {string} nsid
   * @param {number} status
   * @param {string | undefined} error
   * @param {string | undefined} detail
   */
  constructor(nsid, status, error, detail) {
    super(`${nsid} failed: HTTP ${status} ${error ?? ''} ${detail ?? ''}`.trim())
    this.name = 'XrpcError'
    this.nsid = nsid
    this.status = status
    this.reason = error ?? `http_${status}`
  }
}

/**
 * One XRPC call. `body` is JSON unless it is a Uint8Array (sent raw with `encoding`).
 * Returns parsed JSON, raw bytes (`as: 'bytes'`) or null for an empty response.
 */
export async function xrpc(baseUrl, nsid, opts = {}) {
  const { params, body, auth, encoding, as, method } = opts
  const url = new URL(`/xrpc/${nsid}`, baseUrl)
  for (const [k, v] of Object.entries(params ?? {})) {
    if (v === undefined) continue
    for (const item of Array.isArray(v) ? v : [v]) url.searchParams.append(k, String(item))
  }
  const headers = {}
  if (auth) headers.authorization = auth
  let payload
  if (body instanceof Uint8Array) {
    payload = body
    headers['content-type'] = encoding ?? 'application/octet-stream'
  } else if (body !== undefined) {
    payload = JSON.stringify(body)
    headers['content-type'] = 'application/json'
  }
  const res = await fetch(url, {
    method: method ?? (body !== undefined ? 'POST' : 'GET'),
    headers,
    body: payload,
    signal: AbortSignal.timeout(30_000),
  })
  if (!res.ok) {
    const text = await res.text()
    let parsed = {}
    try {
      parsed = JSON.parse(text)
    } catch {
      parsed = { message: text }
    }
    throw new XrpcError(nsid, res.status, parsed.error, parsed.message)
  }
  if (as === 'bytes') return new Uint8Array(await res.arrayBuffer())
  const text = await res.text()
  return text.length > 0 ? JSON.parse(text) : null
}

/**
 * Asks a relay to crawl a PDS. Dev PDSes announce themselves as a port-less "localhost",
 * so the harness sends `localhost:<port>` itself.
 */
export async function requestCrawl(relayUrl, hostname) {
  return xrpc(relayUrl, 'com.atproto.sync.requestCrawl', { body: { hostname } })
}

export const bearer = (account) => `Bearer ${account.accessJwt}`
export const basicAdmin = (password = 'admin-pass') =>
  `Basic ${Buffer.from(`admin:${password}`).toString('base64')}`

/**
 * Records expected firehose events. Each entry:
 *   { step, pds, did, type: '#identity'|'#account'|'#commit'|'#sync', ...fields }
 * `pds` is the index of the PDS whose firehose carries it; `step` is a global counter so
 * events from several PDSes can be merged in the order the driver caused them.
 */
export class Expectations {
  constructor() {
    /** @type {Array<Record<string, unknown>>} */
    this.events = []
    this.step = 0
  }
  add(pds, did, type, fields = {}) {
    this.events.push({ step: this.step++, pds, did, type, ...fields })
  }
  /** Expected events for one PDS, grouped by DID, in order. */
  byDid(pds) {
    const out = new Map()
    for (const e of this.events) {
      if (e.pds !== pds) continue
      if (!out.has(e.did)) out.set(e.did, [])
      out.get(e.did).push(e)
    }
    return out
  }
  /**
   * All PDSes merged, grouped by DID, in the order the driver caused them: what a relay
   * following every PDS would see per account (before any relay-side filtering, e.g. of the
   * old PDS's events after a migration).
   */
  merged() {
    const out = new Map()
    for (const e of [...this.events].sort((x, y) => x.step - y.step)) {
      if (!out.has(e.did)) out.set(e.did, [])
      out.get(e.did).push(e)
    }
    return out
  }
  count(pds) {
    const counts = {}
    for (const e of this.events) if (pds === undefined || e.pds === pds) counts[e.type] = (counts[e.type] ?? 0) + 1
    return counts
  }
}

/** Client for one PDS of the peer; writes expected events into `expect`. */
export class PdsDriver {
  /**
   * @param {{ url: string, index: number, adminPassword?: string, controlUrl?: string, expect?: Expectations }} opts
   */
  constructor(opts) {
    this.url = opts.url
    this.index = opts.index
    this.adminPassword = opts.adminPassword ?? 'admin-pass'
    this.controlUrl = opts.controlUrl
    this.expect = opts.expect ?? new Expectations()
    /** path → current record cid, per did (for `prev` on updates and deletes) */
    this.heads = new Map()
  }

  #record(did, path, cid) {
    if (!this.heads.has(did)) this.heads.set(did, new Map())
    const m = this.heads.get(did)
    const prev = m.get(path) ?? null
    if (cid === null) m.delete(path)
    else m.set(path, cid)
    return prev
  }

  async createAccount({ handle, email, password }) {
    const res = await xrpc(this.url, 'com.atproto.server.createAccount', {
      body: { handle, email: email ?? `${handle}@example.test`, password: password ?? 'hunter22' },
    })
    const account = { ...res, email: email ?? `${handle}@example.test`, password: password ?? 'hunter22', pds: this.index }
    // createAccount sequences these four atomically; the genesis commit has no ops.
    this.expect.add(this.index, res.did, '#identity', { handle })
    this.expect.add(this.index, res.did, '#account', { active: true })
    this.expect.add(this.index, res.did, '#commit', { ops: [] })
    this.expect.add(this.index, res.did, '#sync', {})
    return account
  }

  async createRecord(account, collection, record, rkey) {
    const res = await xrpc(this.url, 'com.atproto.repo.createRecord', {
      auth: bearer(account),
      body: { repo: account.did, collection, record, ...(rkey ? { rkey } : {}) },
    })
    const path = `${collection}/${res.uri.split('/').pop()}`
    this.#record(account.did, path, res.cid)
    this.expect.add(this.index, account.did, '#commit', {
      ops: [{ action: 'create', path, cid: res.cid }],
      rev: res.commit?.rev,
      commit: res.commit?.cid,
    })
    return { ...res, path, rkey: path.split('/')[1] }
  }

  async putRecord(account, collection, rkey, record) {
    const res = await xrpc(this.url, 'com.atproto.repo.putRecord', {
      auth: bearer(account),
      body: { repo: account.did, collection, rkey, record },
    })
    const path = `${collection}/${rkey}`
    const prev = this.#record(account.did, path, res.cid)
    this.expect.add(this.index, account.did, '#commit', {
      ops: [prev ? { action: 'update', path, cid: res.cid, prev } : { action: 'create', path, cid: res.cid }],
      rev: res.commit?.rev,
      commit: res.commit?.cid,
    })
    return { ...res, path }
  }

  async deleteRecord(account, collection, rkey) {
    const res = await xrpc(this.url, 'com.atproto.repo.deleteRecord', {
      auth: bearer(account),
      body: { repo: account.did, collection, rkey },
    })
    const path = `${collection}/${rkey}`
    const prev = this.#record(account.did, path, null)
    this.expect.add(this.index, account.did, '#commit', {
      ops: [{ action: 'delete', path, cid: null, prev }],
      rev: res?.commit?.rev,
      commit: res?.commit?.cid,
    })
    return res
  }

  /**
   * writes: [{ action: 'create'|'update'|'delete', collection, rkey?, value? }]
   * One commit with one op per write.
   */
  async applyWrites(account, writes) {
    const res = await xrpc(this.url, 'com.atproto.repo.applyWrites', {
      auth: bearer(account),
      body: {
        repo: account.did,
        writes: writes.map((w) => ({
          $type: `com.atproto.repo.applyWrites#${w.action}`,
          collection: w.collection,
          ...(w.rkey ? { rkey: w.rkey } : {}),
          ...(w.action !== 'delete' ? { value: w.value } : {}),
        })),
      },
    })
    const ops = writes.map((w, i) => {
      const result = res.results?.[i] ?? {}
      const rkey = w.rkey ?? String(result.uri).split('/').pop()
      const path = `${w.collection}/${rkey}`
      const cid = w.action === 'delete' ? null : result.cid
      const prev = this.#record(account.did, path, cid)
      if (w.action === 'create') return { action: 'create', path, cid }
      if (w.action === 'update') return { action: 'update', path, cid, prev }
      return { action: 'delete', path, cid: null, prev }
    })
    this.expect.add(this.index, account.did, '#commit', { ops, rev: res.commit?.rev, commit: res.commit?.cid })
    return { ...res, ops }
  }

  async uploadBlob(account, bytes = TINY_PNG, mimeType = 'image/png') {
    const res = await xrpc(this.url, 'com.atproto.repo.uploadBlob', {
      auth: bearer(account),
      body: new Uint8Array(bytes),
      encoding: mimeType,
    })
    return res.blob
  }

  /** uploadBlob + a post embedding it. The blob ref lives only inside the record. */
  async postWithImage(account, text, bytes = TINY_PNG, mimeType = 'image/png') {
    const blob = await this.uploadBlob(account, bytes, mimeType)
    const post = await this.createRecord(account, 'app.bsky.feed.post', {
      $type: 'app.bsky.feed.post',
      text,
      createdAt: new Date().toISOString(),
      embed: { $type: 'app.bsky.embed.images', images: [{ image: blob, alt: 'a pixel' }] },
    })
    return { ...post, blob }
  }

  async post(account, text) {
    return this.createRecord(account, 'app.bsky.feed.post', {
      $type: 'app.bsky.feed.post',
      text,
      createdAt: new Date().toISOString(),
    })
  }

  async like(account, subject) {
    return this.createRecord(account, 'app.bsky.feed.like', {
      $type: 'app.bsky.feed.like',
      subject: { uri: subject.uri, cid: subject.cid },
      createdAt: new Date().toISOString(),
    })
  }

  async follow(account, did) {
    return this.createRecord(account, 'app.bsky.graph.follow', {
      $type: 'app.bsky.graph.follow',
      subject: did,
      createdAt: new Date().toISOString(),
    })
  }

  async updateHandle(account, handle) {
    await xrpc(this.url, 'com.atproto.identity.updateHandle', { auth: bearer(account), body: { handle } })
    account.handle = handle
    this.expect.add(this.index, account.did, '#identity', { handle })
  }

  async deactivate(account) {
    await xrpc(this.url, 'com.atproto.server.deactivateAccount', { auth: bearer(account), body: {} })
    this.expect.add(this.index, account.did, '#account', { active: false, status: 'deactivated' })
  }

  async activate(account) {
    await xrpc(this.url, 'com.atproto.server.activateAccount', { auth: bearer(account), method: 'POST' })
    // "over-emitting for backwards compatibility" (pds activateAccount.js)
    this.expect.add(this.index, account.did, '#account', { active: true })
    this.expect.add(this.index, account.did, '#identity', { handle: account.handle })
    this.expect.add(this.index, account.did, '#sync', {})
  }

  async takedown(did, applied = true) {
    await xrpc(this.url, 'com.atproto.admin.updateSubjectStatus', {
      auth: basicAdmin(this.adminPassword),
      body: {
        subject: { $type: 'com.atproto.admin.defs#repoRef', did },
        takedown: applied ? { applied: true, ref: 'e2e-takedown' } : { applied: false },
      },
    })
    this.expect.add(this.index, did, '#account', applied ? { active: false, status: 'takendown' } : { active: true })
  }

  /** Admin account deletion; the PDS also purges that DID's earlier events from its sequencer. */
  async deleteAccount(did) {
    await xrpc(this.url, 'com.atproto.admin.deleteAccount', { auth: basicAdmin(this.adminPassword), body: { did } })
    this.expect.add(this.index, did, '#account', { active: false, status: 'deleted' })
  }

  async describeServer() {
    return xrpc(this.url, 'com.atproto.server.describeServer')
  }

  async getLatestCommit(did) {
    return xrpc(this.url, 'com.atproto.sync.getLatestCommit', { params: { did } })
  }

  async listRepos() {
    return xrpc(this.url, 'com.atproto.sync.listRepos', { params: { limit: 1000 } })
  }

  /** Mail the dev PDS "sent" (captured by peer.mjs's control server). */
  async mail(to) {
    if (!this.controlUrl) throw new Error('controlUrl is required to read mail')
    const url = new URL('/mail', this.controlUrl)
    url.searchParams.set('pds', String(this.index))
    url.searchParams.set('to', to)
    const res = await fetch(url, { signal: AbortSignal.timeout(5000) })
    if (!res.ok) throw new Error(`control /mail: HTTP ${res.status}`)
    return res.json()
  }
}

/**
 * Moves `account` from PDS `from` to PDS `to` (the standard migration flow):
 * service auth → createAccount(did) on the new PDS (deactivated) → getRepo/importRepo →
 * blobs → PLC operation signed by the old PDS (email token) and submitted by the new one →
 * activate on the new PDS → deactivate on the old one.
 * `settle` (optional) is awaited just before the PLC operation changes the signing key, so
 * a live consumer can verify the old PDS's commits with the old key first. `activated`
 * (optional) is awaited after the new PDS activated the account, before the old one deactivates it.
 * Returns the account as it now lives on `to`.
 */
export async function migrateAccount(from, to, account, { settle, activated } = {}) {
  const { did } = account
  const newServerDid = (await to.describeServer()).did
  const { token: serviceJwt } = await xrpc(from.url, 'com.atproto.server.getServiceAuth', {
    auth: bearer(account),
    params: { aud: newServerDid, lxm: 'com.atproto.server.createAccount' },
  })
  const created = await xrpc(to.url, 'com.atproto.server.createAccount', {
    auth: `Bearer ${serviceJwt}`,
    body: { did, handle: account.handle, email: account.email, password: account.password },
  })
  const moved = { ...account, ...created, pds: to.index }
  // The new account starts deactivated: nothing is sequenced on `to` yet.

  const car = await xrpc(from.url, 'com.atproto.sync.getRepo', { params: { did }, as: 'bytes' })
  await xrpc(to.url, 'com.atproto.repo.importRepo', {
    auth: bearer(moved),
    body: car,
    encoding: 'application/vnd.ipld.car',
  })

  let blobs = 0
  for (let cursor, page = 0; page < 100; page++) {
    const missing = await xrpc(to.url, 'com.atproto.repo.listMissingBlobs', {
      auth: bearer(moved),
      params: { limit: 500, cursor },
    })
    for (const b of missing.blobs ?? []) {
      const bytes = await xrpc(from.url, 'com.atproto.sync.getBlob', { params: { did, cid: b.cid }, as: 'bytes' })
      await xrpc(to.url, 'com.atproto.repo.uploadBlob', { auth: bearer(moved), body: bytes })
      blobs++
    }
    cursor = missing.cursor
    if (!cursor || (missing.blobs ?? []).length === 0) break
  }
  // Carry the records' current cids over for later prev checks on the new PDS.
  to.heads.set(did, new Map(from.heads.get(did) ?? []))

  if (settle) await settle()

  const creds = await xrpc(to.url, 'com.atproto.identity.getRecommendedDidCredentials', { auth: bearer(moved) })
  await xrpc(from.url, 'com.atproto.identity.requestPlcOperationSignature', { auth: bearer(account), method: 'POST' })
  const mails = (await from.mail(account.email)).filter((m) => m.template === 'plcOperation')
  const token = mails.at(-1)?.token
  if (!token) throw new Error(`no plcOperation token was mailed for ${account.email}`)
  const { operation } = await xrpc(from.url, 'com.atproto.identity.signPlcOperation', {
    auth: bearer(account),
    body: { token, ...creds },
  })
  await xrpc(to.url, 'com.atproto.identity.submitPlcOperation', { auth: bearer(moved), body: { operation } })
  // submitPlcOperation sequences an #identity event on the new PDS.
  // It carries no handle.
  to.expect.add(to.index, did, '#identity', { handle: null })

  await to.activate(moved)
  if (activated) await activated()
  await from.deactivate(account)
  return { account: moved, blobs, carBytes: car.byteLength }
}

/**
 * The full e2e scenario against a peer (the JSON object peer.mjs prints).
 * Accounts on both PDSes; posts, likes, follows, an image; update and delete; applyWrites;
 * handle change; deactivate/activate; admin takedown and reversal; account deletion;
 * migration of one account (with a blob) from PDS 0 to PDS 1.
 * hooks.settle() is awaited before the migration's PLC operation (see migrateAccount).
 * hooks.checkpoint(name, expect) (optional) is awaited between phases, in this order:
 * 'accounts', 'content', 'edits', 'lifecycle' (before the account deletion), 'migrated' (the
 * new PDS activated the moved account; the old one has not deactivated it yet), e.g. to restart
 * a relay mid-scenario or let it catch up; `expect` holds the events expected so far.
 */
export async function runScenario(peer, hooks = {}) {
  if (!peer.pds || peer.pds.length < 2) throw new Error('runScenario needs a peer with two PDSes')
  const expect = new Expectations()
  const [a, b] = peer.pds.map(
    (p, index) => new PdsDriver({ url: p.url, index, adminPassword: peer.adminPassword, controlUrl: peer.controlUrl, expect }),
  )
  const checkpoint = async (name) => {
    if (hooks.checkpoint) await hooks.checkpoint(name, expect)
  }
  const tag = Math.random().toString(36).slice(2, 8)
  const alice = await a.createAccount({ handle: `alice-${tag}.test` })
  const bob = await a.createAccount({ handle: `bob-${tag}.test` })
  const carol = await b.createAccount({ handle: `carol-${tag}.test` })
  const dave = await b.createAccount({ handle: `dave-${tag}.test` })
  await checkpoint('accounts')

  // Profile, posts, likes, follows, image.
  await a.putRecord(alice, 'app.bsky.actor.profile', 'self', { $type: 'app.bsky.actor.profile', displayName: 'Alice' })
  const p1 = await a.post(alice, 'hello from alice')
  const p2 = await b.post(carol, 'hello from carol')
  await a.like(bob, p1)
  await b.like(carol, p1)
  await a.follow(alice, carol.did)
  await b.follow(dave, alice.did)
  const img = await a.postWithImage(bob, 'a picture')
  await b.like(dave, img)
  await checkpoint('content')

  // Update and delete.
  await a.putRecord(alice, 'app.bsky.actor.profile', 'self', { $type: 'app.bsky.actor.profile', displayName: 'Alice A.' })
  await b.deleteRecord(carol, 'app.bsky.feed.post', p2.rkey)

  // One commit, several ops.
  const now = new Date().toISOString()
  await b.applyWrites(dave, [
    { action: 'create', collection: 'app.bsky.feed.post', value: { $type: 'app.bsky.feed.post', text: 'batch 1', createdAt: now } },
    { action: 'create', collection: 'app.bsky.feed.post', value: { $type: 'app.bsky.feed.post', text: 'batch 2', createdAt: now } },
    { action: 'create', collection: 'app.bsky.graph.follow', value: { $type: 'app.bsky.graph.follow', subject: bob.did, createdAt: now } },
  ])
  await checkpoint('edits')

  // Identity and account lifecycle.
  await b.updateHandle(carol, `carol2-${tag}.test`)
  await a.deactivate(bob)
  await a.activate(bob)
  await b.takedown(dave.did, true)
  await b.takedown(dave.did, false)
  await b.post(dave, 'back again')
  await checkpoint('lifecycle')
  await b.deleteAccount(carol.did)

  // Migration: bob (who has an image blob) moves from PDS 0 to PDS 1, then writes there.
  const migration = await migrateAccount(a, b, bob, { settle: hooks.settle, activated: () => checkpoint('migrated') })
  const bobOnB = migration.account
  await b.post(bobOnB, 'bob, now on the second PDS')

  return {
    expect,
    accounts: { alice, bob: bobOnB, carol, dave },
    deleted: [carol.did],
    migrated: [{ did: bob.did, from: 0, to: 1 }],
    migration: { blobs: migration.blobs, carBytes: migration.carBytes },
    drivers: [a, b],
  }
}
