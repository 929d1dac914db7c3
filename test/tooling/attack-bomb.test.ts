import { afterEach, describe, expect, it } from 'vitest'
import WebSocket from 'ws'
import { BOMB_DEPTH, BombHost, bombFrame } from '../../bench/attacks/bomb.js'
import { decodeFrame, FrameError, MAX_FRAME_BYTES } from '../../src/atproto/frame.js'

describe('attack bench: nesting bomb', () => {
  it('is a canonical header and an array nested `depth` deep, under the frame limit at full depth', () => {
    const small = bombFrame('#commit', 3)
    // {t: '#commit', op: 1}: keys in canonical (length-first) order, then [[[0]]]
    expect(Buffer.from(small).toString('hex')).toBe('a261746723636f6d6d6974626f7001' + '818181' + '00')
    const full = bombFrame('#info')
    expect(full.length).toBeGreaterThan(4_800_000)
    expect(full.length).toBeLessThanOrEqual(MAX_FRAME_BYTES)
    expect(full.length).toBe(full.indexOf(0x81) + BOMB_DEPTH + 1)
    expect(() => bombFrame('#info', MAX_FRAME_BYTES)).toThrow(/exceeds/)
  })

  it('a shallow one is refused as a frame whose body is not a map', () => {
    let err: unknown
    try {
      // Shallow enough for the skip-scan limit (32 deep): refused only because the body is not a map.
      decodeFrame(bombFrame('#info', 24))
    } catch (e) {
      err = e
    }
    expect(err).toBeInstanceOf(FrameError)
    expect((err as FrameError).reason).toBe('bad-frame')
  })

  describe('BombHost', () => {
    let host: BombHost | undefined
    const sockets: WebSocket[] = []
    afterEach(async () => {
      for (const ws of sockets) ws.terminate()
      await host?.close()
    })

    it('sends each bomb once, the next on the reconnected socket after the subscriber closed', async () => {
      host = await BombHost.start()
      const received: number[][] = []
      // A subscriber that closes after each frame and reconnects, as a relay that drops the connection does.
      const subscribe = () => {
        const ws = new WebSocket(`ws://${host!.hostname}/xrpc/com.atproto.sync.subscribeRepos`)
        sockets.push(ws)
        const mine: number[] = []
        received.push(mine)
        ws.on('message', (data: Buffer) => {
          mine.push(data.length)
          ws.close()
        })
        ws.on('close', () => {
          if (received.flat().length < 4) subscribe()
        })
      }
      subscribe()
      expect(await host.subscribed(10_000)).toBe(true)
      const deliveries = await host.run({ count: 2, depth: 10, counted: async () => 0, handledWaitMs: 10_000, reconnectWaitMs: 10_000, deadlineMs: 30_000 })
      expect(deliveries.map((d) => d.t)).toEqual(['#info', '#info', '#commit', '#commit'])
      expect(deliveries.map((d) => d.connection)).toEqual([1, 2, 3, 4])
      expect(deliveries.every((d) => d.relayClosed && d.handledAfterMs !== null)).toBe(true)
      // One frame per connection, none replayed.
      expect(received.slice(0, 4).map((r) => r.length)).toEqual([1, 1, 1, 1])
      expect(host.stats().framesSent).toBe(4)
    })

    it('stops when the subscriber does not come back', async () => {
      host = await BombHost.start()
      const ws = new WebSocket(`ws://${host.hostname}/xrpc/com.atproto.sync.subscribeRepos`)
      sockets.push(ws)
      ws.on('message', () => ws.close())
      expect(await host.subscribed(10_000)).toBe(true)
      const deliveries = await host.run({ count: 5, depth: 10, counted: async () => 0, handledWaitMs: 10_000, reconnectWaitMs: 300, deadlineMs: 30_000 })
      expect(deliveries).toHaveLength(1)
      expect(deliveries[0]!.relayClosed).toBe(true)
    })
  })
})
