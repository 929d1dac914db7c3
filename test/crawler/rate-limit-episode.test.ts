/**
 * Rate-limit episodes: one log line when a host starts being held back and one
 * when it ends, the longest window wins, and the lexicon status follows it.
 */
import { pino } from 'pino'
import { Gauge, Registry } from 'prom-client'
import { describe, expect, it } from 'vitest'
import { lexiconHostStatus } from '../../src/api/sync-queries.js'
import { RateLimitEpisode } from '../../src/crawler/rate-limit-episode.js'
import type { RateLimitState } from '../../src/crawler/rate-limit.js'
import { waitUntil } from '../helpers/wait.js'

const state: RateLimitState = { perSecond: 50, perHour: 2_500, perDay: 20_000, counts: { perSecond: 50, perHour: 2_500, perDay: 2_600 } }

function setup(quietMs: number) {
  const logs: { level: number; msg: string; window?: string; limit?: number }[] = []
  const logger = pino({ level: 'info' }, { write: (line: string) => void logs.push(JSON.parse(line) as (typeof logs)[number]) })
  const registry = new Registry()
  const gauge = new Gauge({ name: 'held', help: 'held', registers: [registry] })
  const value = async () => (await gauge.get()).values[0]?.value ?? 0
  return { logs, episode: new RateLimitEpisode(logger, gauge, quietMs), value }
}

describe('RateLimitEpisode', () => {
  it('logs once per episode and per longer window, counts it in the gauge, ends after the quiet period', async () => {
    const { logs, episode, value } = setup(100)
    expect(episode.view()).toBeNull()
    episode.held('perSecond', state)
    episode.held('perSecond', state)
    expect(episode.view()).toMatchObject({ window: 'perSecond', limit: 50 })
    expect(await value()).toBe(1)
    expect(logs.map((l) => [l.level, l.msg])).toEqual([[30, 'host held back by its per-second rate limit (50): reading paused while it is over, nothing is dropped']])
    expect(lexiconHostStatus('active', episode.view())).toBe('active') // per-second pacing is not "throttled"

    episode.held('perHour', state)
    episode.held('perSecond', state)
    expect(episode.view()).toMatchObject({ window: 'perHour', limit: 2_500 })
    expect(await value()).toBe(1)
    expect(logs.at(-1)).toMatchObject({ level: 40, window: 'perHour', limit: 2_500, msg: expect.stringMatching(/^host held back by its hourly rate limit \(2500\)/) })
    expect(logs).toHaveLength(2)
    expect(lexiconHostStatus('active', episode.view())).toBe('throttled')
    expect(lexiconHostStatus('banned', episode.view())).toBe('banned')

    await waitUntil(() => episode.view() === null, 'episode over', 5_000)
    expect(await value()).toBe(0)
    expect(logs).toHaveLength(3)
    expect(logs[2]).toMatchObject({ level: 30, window: 'perHour', msg: 'host no longer held back by its rate limit' })
    expect(lexiconHostStatus('active', episode.view())).toBe('active')
  })

  it('a long wait keeps the episode open until it is over; stop() ends it quietly', async () => {
    const { logs, episode, value } = setup(60_000)
    episode.held('perDay', state)
    episode.waitEnded()
    expect(episode.view()).toMatchObject({ window: 'perDay', limit: 20_000 })
    episode.stop()
    expect(episode.view()).toBeNull()
    expect(await value()).toBe(0)
    expect(logs).toHaveLength(1)
  })
})
