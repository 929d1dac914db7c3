/** Admin operations on domain bans: the `domain_ban` table, and blocking the hosts already crawled under a banned domain. */
import { AdminError } from '../api/admin/controls.js'
import type { Storage } from '../storage/db.js'
import type { AdminHosts } from './hosts.js'

const DOMAIN = /^[a-z0-9-]+(\.[a-z0-9-]+)+$/

export class AdminDomains {
  constructor(private readonly deps: { storage: Storage; hosts: Pick<AdminHosts, 'blockUnder'> }) {}

  async list(): Promise<{ domain: string; createdAt: string }[]> {
    const rows = await this.deps.storage.db.selectFrom('domain_ban').selectAll().orderBy('domain').execute()
    return rows.map((r) => ({ domain: r.domain, createdAt: new Date(r.created_at).toISOString() }))
  }

  /** Bans a domain and every host under it; hosts already crawled there are blocked too. */
  async ban(domain: string): Promise<void> {
    const d = normaliseDomain(domain)
    await this.deps.storage.db.insertInto('domain_ban').values({ domain: d }).onConflict((oc) => oc.column('domain').doNothing()).execute()
    await this.deps.hosts.blockUnder(d)
  }

  async unban(domain: string): Promise<void> {
    const d = normaliseDomain(domain)
    const res = await this.deps.storage.db.deleteFrom('domain_ban').where('domain', '=', d).executeTakeFirst()
    if (!res.numDeletedRows) throw new AdminError(404, 'NotFound', `domain is not banned: ${d}`)
  }
}

function normaliseDomain(domain: string): string {
  const d = domain.trim().toLowerCase().replace(/^\*\./, '').replace(/\.$/, '')
  if (!DOMAIN.test(d)) throw new AdminError(400, 'InvalidRequest', `not a domain name: ${domain}`)
  return d
}
