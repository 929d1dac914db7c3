/**
 * Settings an operator changes at run time (admin API) that must survive a
 * restart: kept in `relay_state` under one key; the environment gives defaults.
 */
import type { Storage } from './db.js'

export interface RuntimeSettingValues {
  requestCrawlEnabled: boolean
  newHostsPerDay: number
}

const KEY = 'settings'

export class RuntimeSettings {
  private current: RuntimeSettingValues

  constructor(
    private readonly storage: Storage,
    private readonly defaults: RuntimeSettingValues,
  ) {
    this.current = { ...defaults }
  }

  /** Defaults overlaid with whatever an operator saved earlier. */
  async load(): Promise<RuntimeSettingValues> {
    const row = await this.storage.db.selectFrom('relay_state').select('value').where('key', '=', KEY).executeTakeFirst()
    const saved = (row?.value ?? {}) as Partial<RuntimeSettingValues>
    this.current = {
      requestCrawlEnabled: typeof saved.requestCrawlEnabled === 'boolean' ? saved.requestCrawlEnabled : this.defaults.requestCrawlEnabled,
      newHostsPerDay: typeof saved.newHostsPerDay === 'number' ? saved.newHostsPerDay : this.defaults.newHostsPerDay,
    }
    return { ...this.current }
  }

  get(): RuntimeSettingValues {
    return { ...this.current }
  }

  async update(change: Partial<RuntimeSettingValues>): Promise<RuntimeSettingValues> {
    const next = { ...this.current, ...change }
    const value = JSON.stringify(next)
    await this.storage.db
      .insertInto('relay_state')
      .values({ key: KEY, value })
      .onConflict((oc) => oc.column('key').doUpdateSet({ value, updated_at: new Date() }))
      .execute()
    this.current = next
    return { ...next }
  }
}
