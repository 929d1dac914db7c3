/**
 * Admin operations on hosts: the host list with live counters, add, block,
 * unblock, account limit and strictness. The host-table SQL the admin reads is
 * here; changes go through the crawler, which owns the live connections and
 * serialises host writes.
 */
import { AdminError, type AdminHost } from '../api/admin/controls.js'
import { HostWriteError, type Crawler } from '../crawler/index.js'
import type { IngestPipeline } from '../ingest/index.js'
import type { HostStats } from '../stats/host-stats.js'
import type { Storage } from '../storage/db.js'

export interface AdminHostsDeps {
  storage: Storage
  crawler: Crawler
  ingest: Pick<IngestPipeline, 'releaseThrottled'>
  stats: HostStats
}

/** The admin host list is one page: bounded so a flood of hosts cannot make one request unbounded. */
const MAX_LISTED_HOSTS = 100_000

export class AdminHosts {
  /** Previous `received` count per host, to turn counters into rates. */
  private readonly lastSample = new Map<string, { at: number; received: number }>()

  constructor(private readonly deps: AdminHostsDeps) {}

  async list(): Promise<AdminHost[]> {
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
    // One pass over the connections, not one per host: with thousands of hosts a lookup each made the list quadratic.
    const connections = new Map(this.deps.crawler.connections().map((c) => [c.hostname, c]))
    return hosts.map((h) => {
      const events = this.deps.stats.snapshot(h.hostname)
      const conn = connections.get(h.hostname)
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

  async add(hostname: string): Promise<{ hostname: string; outcome: 'added' | 'reconnecting' | 'connected' }> {
    return this.deps.crawler.addHost(hostname)
  }

  async block(hostname: string): Promise<void> {
    await hostWrite(hostname, () => this.deps.crawler.blockHost(hostname))
  }

  async unblock(hostname: string): Promise<void> {
    await hostWrite(hostname, () => this.deps.crawler.unblockHost(hostname))
  }

  async setAccountLimit(hostname: string, limit: number): Promise<void> {
    await hostWrite(hostname, () => this.deps.crawler.setAccountLimit(hostname, limit))
    const host = await this.find(hostname)
    // Raising the limit releases throttled accounts in arrival order, each with an #account event.
    await this.deps.ingest.releaseThrottled(host.id)
  }

  async setLenient(hostname: string, lenient: boolean | null): Promise<void> {
    await hostWrite(hostname, () => this.deps.crawler.setLenient(hostname, lenient))
  }

  /** Blocks every host that is not banned yet under `domain` (the domain itself and its subdomains). */
  async blockUnder(domain: string): Promise<void> {
    const hosts = await this.deps.storage.db
      .selectFrom('host')
      .select('hostname')
      .where((eb) => eb.or([eb('hostname', '=', domain), eb('hostname', 'like', `%.${domain}`)]))
      .where('status', '!=', 'banned')
      .execute()
    for (const h of hosts) await this.block(h.hostname)
  }

  private async find(hostname: string): Promise<{ id: number }> {
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
