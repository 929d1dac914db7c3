/**
 * The admin surface's view of the running relay (AdminControls): one object per
 * admin noun (src/admin/: hosts, domains, accounts) plus consumers, settings and
 * activity, which are one call each. Every change that matters to consumers goes
 * through ingest so it is emitted as an event (takedowns emit #account).
 */
import { AdminAccounts } from './admin/accounts.js'
import { AdminDomains } from './admin/domains.js'
import { AdminHosts } from './admin/hosts.js'
import type { ActivityHistory, ActivityView } from './api/admin/activity.js'
import type { AdminAccount, AdminCollections, AdminConsumer, AdminControls, AdminHost, RelaySettings } from './api/admin/controls.js'
import type { Crawler } from './crawler/index.js'
import type { Firehose } from './firehose/index.js'
import type { IngestPipeline } from './ingest/index.js'
import type { Sequencer } from './sequencer/index.js'
import type { HostStats } from './stats/host-stats.js'
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
  /** The listReposByCollection backfill, when on. */
  collectionsBackfill?: { status(): NonNullable<AdminCollections['backfill']> }
}

export class RelayAdmin implements AdminControls {
  private readonly hosts: AdminHosts
  private readonly domains: AdminDomains
  private readonly accounts: AdminAccounts

  constructor(private readonly deps: RelayAdminDeps) {
    this.hosts = new AdminHosts(deps)
    this.domains = new AdminDomains({ storage: deps.storage, hosts: this.hosts })
    this.accounts = new AdminAccounts(deps)
  }

  listHosts(): Promise<AdminHost[]> {
    return this.hosts.list()
  }

  addHost(hostname: string): Promise<{ hostname: string; outcome: 'added' | 'reconnecting' | 'connected' }> {
    return this.hosts.add(hostname)
  }

  blockHost(hostname: string): Promise<void> {
    return this.hosts.block(hostname)
  }

  unblockHost(hostname: string): Promise<void> {
    return this.hosts.unblock(hostname)
  }

  setHostAccountLimit(hostname: string, limit: number): Promise<void> {
    return this.hosts.setAccountLimit(hostname, limit)
  }

  setHostLenient(hostname: string, lenient: boolean | null): Promise<void> {
    return this.hosts.setLenient(hostname, lenient)
  }

  listDomainBans(): Promise<{ domain: string; createdAt: string }[]> {
    return this.domains.list()
  }

  banDomain(domain: string): Promise<void> {
    return this.domains.ban(domain)
  }

  unbanDomain(domain: string): Promise<void> {
    return this.domains.unban(domain)
  }

  account(did: string): Promise<AdminAccount | null> {
    return this.accounts.view(did)
  }

  takedown(did: string): Promise<void> {
    return this.accounts.takedown(did)
  }

  restore(did: string): Promise<void> {
    return this.accounts.restore(did)
  }

  listTakedowns(): Promise<string[]> {
    return this.accounts.listTakedowns()
  }

  activity(): ActivityView {
    return this.deps.activity.view()
  }

  consumers(): AdminConsumer[] {
    return this.deps.firehose.consumers()
  }

  async collections(): Promise<AdminCollections> {
    return { backfill: this.deps.collectionsBackfill?.status() ?? null }
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
}
