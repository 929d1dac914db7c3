/**
 * The one rule for an event's `time_us` (Jetstream's time cursor): wall-clock µs, or one above the
 * previous event's when the clock is behind or two events fall in the same ms, so it is strictly
 * increasing with seq. After a restart it continues above the newest stored (`resume`).
 * Used by the sequencer and by the splitter's log, which stamps the frames it stores the same way.
 */
import type { Kysely } from 'kysely'
import type { Database } from '../storage/types.js'

export class EventClock {
  private last = 0

  /** Continue above the newest `time_us` in the event log. */
  async resume(db: Kysely<Database>): Promise<void> {
    const newest = await db
      .selectFrom('event')
      .select((eb) => eb.fn.max('time_us').as('t'))
      .executeTakeFirst()
    this.last = Math.max(this.last, Number(newest?.t ?? 0))
  }

  next(): number {
    this.last = Math.max(Date.now() * 1000, this.last + 1)
    return this.last
  }
}
