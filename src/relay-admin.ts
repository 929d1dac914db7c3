/**
 * The admin surface's view of the running relay (AdminControls): host, domain,
 * account and consumer operations carried out through the crawler, ingest
 * pipeline, firehose and database. Every change that matters to consumers goes
 * through ingest so it is emitted as an event (takedowns emit #account).
 */
import type { ActivityHistory, ActivityView } from './api/admin/activity.js'
import { AdminError, type AdminAccount, type AdminConsumer, type AdminControls, type AdminHost, type RelaySettings } from './api/admin/controls.js'
import { cidToString } from './atproto/cid.js'
import { HostWriteError, type Crawler } from './crawler/index.js'
import type { Firehose } from './firehose/index.js'
import { IngestError, type HostStats, type IngestPipeline } from './ingest/index.js'
import type { Sequencer } from './sequencer/index.js'
import type { Storage } from './storage/db.js'
import type { RuntimeSettings } from './storage/runtime-settings.js'

export interface RelayAdminDeps {
  storage: Storage
  crawler: Crawler
  ingest: IngestPipeline
  firehose: Firehose
  sequencer: Sequencer
  stats: HostStats
  settings: RuntimeSettings
  activity: ActivityHistory
}

const DOMAIN = /^[a-z0-9-]+(\.[a-z0-9-]+)+$/
/** The admin host list is one page: bounded so a flood of hosts cannot make one request unbounded. */
const MAX_LISTED_HOSTS = 100_000

export class RelayAdmin implements AdminControls {
  /** Previous `received` count per host, to turn counters into rates. */
  private readonly lastSample = new Map<string, { at: number; received: number }>()

  constructor(private readonly deps: RelayAdminDeps) {}

  async listHosts(): Promise<AdminHost[]> {
    const { db } = this.deps.storage
    const [hosts, throttled] = await Promise.all([
      db.selectFrom('host').selectAll().orderBy('id').limit(MAX_LISTED_HOSTS).execute(),
      db
        .selectFrom('account')
        .select(['host_id', (eb) => eb.fn.countAll<number>().as('n')])
        .where('local_status', '=', 'throttled')
        .groupBy('host_id')
        .execute(),
    ])
    const throttledBy = new Map(throttled.map((r) => [r.host_id, Number(r.n)]))
    const now = Date.now()
    const rateLimited = this.deps.crawler.rateLimitedHosts()
    return hosts.map((h) => {
      const events = this.deps.stats.snapshot(h.hostname)
      const conn = this.deps.crawler.connection(h.hostname)
      return {
        hostname: h.hostname,
        status: h.status,
        cursor: h.cursor,
        accountCount: h.account_count,
        accountLimit: h.account_limit,
        throttledAccounts: throttledBy.get(h.id) ?? 0,
        trusted: h.trusted,
        lenient: h.lenient,
        firstSeen: new Date(h.first_seen).toISOString(),
        connected: conn?.state === 'open',
        eventsPerSecond: this.rate(h.hostname, events.received, now),
        events: { received: events.received, accepted: events.accepted, dropped: events.dropped, discontinuities: events.discontinuities },
        lastError: h.last_error
          ? { message: h.last_error, at: h.last_error_at ? new Date(h.last_error_at).toISOString() : null }
          : events.lastError,
        rateLimited: rateLimited.get(h.hostname) ?? null,
      }
    })
  }

  async addHost(hostname: string): Promise<{ hostname: string; outcome: 'added' | 'reconnecting' | 'connected' }> {
    return this.deps.crawler.addHost(hostname)
  }

  async blockHost(hostname: string): Promise<void> {
    await hostWrite(hostname, () => this.deps.crawler.blockHost(hostname))
  }

  async unblockHost(hostname: string): Promise<void> {
    await hostWrite(hostname, () => this.deps.crawler.unblockHost(hostname))
  }

  async setHostAccountLimit(hostname: string, limit: number): Promise<void> {
    await hostWrite(hostname, () => this.deps.crawler.setAccountLimit(hostname, limit))
    const host = await this.host(hostname)
    // Raising the limit releases throttled accounts in arrival order, each with an #account event.
    await this.deps.ingest.releaseThrottled(host.id)
  }

  async setHostLenient(hostname: string, lenient: boolean | null): Promise<void> {
    await hostWrite(hostname, () => this.deps.crawler.setLenient(hostname, lenient))
  }

  async listDomainBans(): Promise<{ domain: string; createdAt: string }[]> {
    const rows = await this.deps.storage.db.selectFrom('domain_ban').selectAll().orderBy('domain').execute()
    return rows.map((r) => ({ domain: r.domain, createdAt: new Date(r.created_at).toISOString() }))
  }

  /** Bans a domain and every host under it; hosts already crawled there are blocked too. */
  async banDomain(domain: string): Promise<void> {
    const d = normaliseDomain(domain)
    const { db } = this.deps.storage
    await db.insertInto('domain_ban').values({ domain: d }).onConflict((oc) => oc.column('domain').doNothing()).execute()
    const hosts = await db
      .selectFrom('host')
      .select('hostname')
      .where((eb) => eb.or([eb('hostname', '=', d), eb('hostname', 'like', `%.${d}`)]))
      .where('status', '!=', 'banned')
      .execute()
    for (const h of hosts) await hostWrite(h.hostname, () => this.deps.crawler.blockHost(h.hostname))
  }

  async unbanDomain(domain: string): Promise<void> {
    const d = normaliseDomain(domain)
    const res = await this.deps.storage.db.deleteFrom('domain_ban').where('domain', '=', d).executeTakeFirst()
    if (!res.numDeletedRows) throw new AdminError(404, 'NotFound', `domain is not banned: ${d}`)
  }

  async account(did: string): Promise<AdminAccount | null> {
    const row = await this.deps.storage.db
      .selectFrom('account')
      .innerJoin('host', 'host.id', 'account.host_id')
      .leftJoin('account_head', 'account_head.account_id', 'account.id')
      .select(['account.did', 'account.local_status', 'account.upstream_status', 'host.hostname', 'account_head.rev', 'account_head.commit_cid'])
      .where('account.did', '=', did)
      .executeTakeFirst()
    if (!row) return null
    const view = await this.deps.ingest.accountStatus(did)
    const combined = view?.combined ?? { active: false }
    return {
      did: row.did,
      hostname: row.hostname,
      localStatus: row.local_status,
      upstreamStatus: row.upstream_status,
      active: combined.active,
      ...(combined.status ? { status: combined.status } : {}),
      rev: row.rev,
      head: row.commit_cid ? cidToString(row.commit_cid) : null,
    }
  }

  async takedown(did: string): Promise<void> {
    const before = await this.deps.ingest.accountStatus(did)
    if (!before) throw new AdminError(404, 'RepoNotFound', `account not known to this relay: ${did}`)
    // Ingest purges the account's events from the event log and then emits the
    // takedown #account; the in-memory replay ring is cleared first, so that
    // notice stays replayable for consumers that saw the earlier events.
    this.deps.firehose.forgetAccount(before.accountId)
    await this.localStatusChange(() => this.deps.ingest.takedown(did), did)
  }

  async restore(did: string): Promise<void> {
    await this.localStatusChange(() => this.deps.ingest.restore(did), did)
  }

  async listTakedowns(): Promise<string[]> {
    const rows = await this.deps.storage.db.selectFrom('account').select('did').where('local_status', '=', 'takendown').orderBy('id').execute()
    return rows.map((r) => r.did)
  }

  activity(): ActivityView {
    return this.deps.activity.view()
  }

  consumers(): AdminConsumer[] {
    return this.deps.firehose.consumers()
  }

  async settings(): Promise<RelaySettings> {
    return this.deps.settings.get()
  }

  async updateSettings(change: Partial<RelaySettings>): Promise<RelaySettings> {
    const next = await this.deps.settings.update(change)
    this.deps.crawler.admission.setDisableRequestCrawl(!next.requestCrawlEnabled)
    this.deps.crawler.admission.setNewHostsPerDay(next.newHostsPerDay)
    return next
  }

  private async localStatusChange<T>(fn: () => Promise<T>, did: string): Promise<T> {
    try {
      return await fn()
    } catch (err) {
      if (err instanceof IngestError && err.reason === 'unknown-account')
        throw new AdminError(404, 'RepoNotFound', `account not known to this relay: ${did}`)
      throw err
    }
  }

  private async host(hostname: string) {
    const host = await this.deps.storage.db
      .selectFrom('host')
      .select(['id'])
      .where('hostname', '=', hostname.trim().toLowerCase())
      .executeTakeFirst()
    if (!host) throw hostNotFound(hostname)
    return host
  }

  private rate(hostname: string, received: number, now: number): number {
    const last = this.lastSample.get(hostname)
    this.lastSample.set(hostname, { at: now, received })
    if (!last || now <= last.at) return 0
    return ((received - last.received) * 1000) / (now - last.at)
  }
}

/** Runs a crawler host write: an unknown host, a row that vanished, or a failed UPDATE each answer an error, never ok. */
async function hostWrite(hostname: string, write: () => Promise<boolean>): Promise<void> {
  let found: boolean
  try {
    found = await write()
  } catch (err) {
    if (!(err instanceof HostWriteError)) throw err
    if (err.reason === 'no-row') throw new AdminError(404, 'HostNotFound', `${err.message}; the host is not known to this relay any more`)
    throw new AdminError(500, 'HostWriteFailed', `${err.message}; the change was not stored, try again`)
  }
  if (!found) throw hostNotFound(hostname)
}

function hostNotFound(hostname: string): AdminError {
  return new AdminError(404, 'HostNotFound', `host not known to this relay: ${hostname}`)
}

function normaliseDomain(domain: string): string {
  const d = domain.trim().toLowerCase().replace(/^\*\./, '').replace(/\.$/, '')
  if (!DOMAIN.test(d)) throw new AdminError(400, 'InvalidRequest', `not a domain name: ${domain}`)
  return d
}
