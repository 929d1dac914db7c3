import { describe, expect, it } from 'vitest'
import { DialPacer } from '../../src/crawler/dial-pacing.js'

describe('start-up dial pacing', () => {
  it('keeps one dial per interval on average: waits when ahead of the schedule, not at all when behind', () => {
    let now = 1_000
    const pacer = new DialPacer(2, () => now)
    expect(pacer.dialled()).toBe(2) // dial 1 at t=0: the next is due at t=2
    now += 5 // a sleep overshot, or dialling itself took time: dials 2 and 3 are late
    expect(pacer.dialled()).toBe(0)
    expect(pacer.dialled()).toBe(1) // dial 3 done at t=5, dial 4 due at t=6
    now += 1
    expect(pacer.dialled()).toBe(2)
  })

  it('3,000 dials behind a slow timer still finish on the schedule, not 3,000 timer overheads later', () => {
    let now = 0
    const pacer = new DialPacer(1, () => now)
    let sleeps = 0
    for (let i = 0; i < 3_000; i++) {
      const wait = pacer.dialled()
      if (wait >= 1) {
        // A busy event loop: every sleep lasts 3 ms, whatever was asked.
        sleeps++
        now += 3
      }
    }
    expect(now).toBeLessThanOrEqual(3_003)
    expect(sleeps).toBeLessThan(1_100)
  })

  it('after a long stall catches up by at most 20 dials at once, then keeps the pace', () => {
    let now = 0
    const pacer = new DialPacer(1, () => now)
    pacer.dialled()
    now += 500 // the event loop was blocked for 500 dial intervals
    let atOnce = 0
    while (pacer.dialled() === 0) atOnce++
    expect(atOnce).toBeLessThanOrEqual(21) // the 20 it may be behind, and the one due now
    expect(atOnce).toBeGreaterThanOrEqual(19)
  })
})
