/**
 * The crawler's writes to the host table, serialised per host so a late
 * "offline" never overwrites a newer "active", and the status each host has
 * as far as the relay knows (what operators see beside its connection).
 */
import type { Logger } from 'pino'
import type { Storage } from '../storage/db.js'
import type { Host, HostStatus } from '../storage/types.js'
import { HostWriteError, updateHost, type HostPatch } from './host-store.js'

export class HostWrites {
  private readonly status = new Map<number, HostStatus>()
  private readonly pending = new Map<number, Promise<void>>()

  constructor(
    private readonly storage: Storage,
    private readonly log: Logger,
  ) {}

  /** The host's status as last written (or loaded), 'active' when unknown. */
  statusOf(hostId: number): HostStatus {
    return this.status.get(hostId) ?? 'active'
  }

  /** The status the host row was loaded with (a connection starting). */
  loaded(host: Host): void {
    this.status.set(host.id, host.status)
  }

  /** A connection's own status write: a failure is logged (the next event writes again), never thrown. */
  write(hostId: number, patch: HostPatch): Promise<void> {
    return this.enqueue(hostId, patch).then(
      () => undefined,
      () => undefined, // logged in enqueue
    )
  }

  /**
   * An operator's write: answers HostWriteError when the UPDATE failed or changed no row, so the admin
   * API says so. Its status reaches memory only once stored: a failed write changes nothing.
   */
  async adminWrite(host: Host, patch: HostPatch): Promise<void> {
    let changed: number
    try {
      changed = await this.enqueue(host.id, patch, 'once-stored')
    } catch (err) {
      throw new HostWriteError('failed', host.hostname, { cause: err })
    }
    if (changed === 0) {
      this.log.error({ host: host.hostname }, 'host update matched no row')
      throw new HostWriteError('no-row', host.hostname)
    }
  }

  /** Resolves when every write queued so far has ended. */
  async settled(): Promise<void> {
    await Promise.all(this.pending.values())
  }

  /**
   * Resolves to the rows changed. A connection's own status is believed at once (its next event
   * writes again; onOpen must see it before it lands); an operator's (`once-stored`) only when the row changed.
   */
  private enqueue(hostId: number, patch: HostPatch, applyStatus: 'at-once' | 'once-stored' = 'at-once'): Promise<number> {
    const status = patch.status
    if (status !== undefined && applyStatus === 'at-once') this.status.set(hostId, status)
    const prev = this.pending.get(hostId) ?? Promise.resolve()
    const result = prev
      .then(() => updateHost(this.storage.db, hostId, patch))
      .then((changed) => {
        if (status !== undefined && applyStatus === 'once-stored' && changed > 0) this.status.set(hostId, status)
        return changed
      })
    const settled = result.then(
      () => undefined,
      (err: unknown) => this.log.error({ err, hostId }, 'host update failed'),
    )
    this.pending.set(hostId, settled)
    void settled.finally(() => {
      if (this.pending.get(hostId) === settled) this.pending.delete(hostId)
    })
    return result
  }
}
