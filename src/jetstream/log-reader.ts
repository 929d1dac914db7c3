/**
 * What Jetstream reads from the durable event log: pages of events with their
 * time and DID, and the seq a time cursor starts at (through
 * event_time_us_idx, no scan). Events logged before time_us existed
 * (schema migration 3) fall back to their received time when read; while
 * the oldest retained event is one of them, a time cursor starts from the
 * oldest event (clamped) rather than skip them. A row with no
 * account of its own (account_id 0: the splitter's, which stores upstream
 * frames unchanged) takes its DID from the frame; the relay's rows never do.
 */
import { sql, type Kysely } from 'kysely'
import { frameDid } from '../atproto/frame-did.js'
import type { Database } from '../storage/types.js'

export interface LoggedJetEvent {
  seq: number
  timeUs: number
  did: string
  frame: Uint8Array
}

export interface JetLogSource {
  readPage(afterSeq: number, limit: number): Promise<LoggedJetEvent[]>
  /**
   * Where a time cursor starts: just before the first retained event at or after `timeUs`
   * (`clamped` when that is the oldest retained event and the cursor was older); undefined when no event is that new.
   */
  afterSeqForTime(timeUs: number): Promise<{ afterSeq: number; clamped: boolean } | undefined>
  /** The oldest retained seq, or undefined when the log is empty. */
  oldestSeq(): Promise<number | undefined>
}

export class JetLogReader implements JetLogSource {
  constructor(private readonly db: Kysely<Database>) {}

  async readPage(afterSeq: number, limit: number): Promise<LoggedJetEvent[]> {
    // did is null only for account_id 0 (account ids start at 1); a relay row whose account is gone stays ''.
    const { rows } = await sql<{ seq: number; time_us: number | string; did: string | null; frame: Uint8Array }>`
      select e.seq, coalesce(e.time_us, (extract(epoch from e.received_at) * 1000000)::int8) as time_us,
        case when e.account_id = 0 then null else coalesce(a.did, '') end as did, e.frame
      from event e left join account a on a.id = e.account_id
      where e.seq > ${afterSeq} order by e.seq limit ${limit}`.execute(this.db)
    return rows.map((r) => ({ seq: Number(r.seq), timeUs: Number(r.time_us), did: r.did ?? frameDid(r.frame), frame: r.frame }))
  }

  async afterSeqForTime(timeUs: number): Promise<{ afterSeq: number; clamped: boolean } | undefined> {
    const { rows } = await sql<{ seq: number | string; time_us: number | string | null; received_us: number | string }>`
      select seq, time_us, (extract(epoch from received_at) * 1000000)::int8 as received_us
      from event order by seq limit 1`.execute(this.db)
    const first = rows[0]
    if (first === undefined) return undefined
    const oldest = Number(first.seq)
    // The oldest retained events were logged before time_us existed, out of the index's sight:
    // start from the oldest rather than skip them (clamped when the cursor is older than it).
    if (first.time_us === null) return { afterSeq: oldest - 1, clamped: Number(first.received_us) > timeUs }
    const at = await this.db.selectFrom('event').select(['seq', 'time_us']).where('time_us', '>=', timeUs).orderBy('time_us').limit(1).executeTakeFirst()
    if (at === undefined) return undefined
    const seq = Number(at.seq)
    return { afterSeq: seq - 1, clamped: seq <= oldest && Number(at.time_us) > timeUs }
  }

  async oldestSeq(): Promise<number | undefined> {
    const row = await this.db.selectFrom('event').select('seq').orderBy('seq').limit(1).executeTakeFirst()
    return row === undefined ? undefined : Number(row.seq)
  }
}
