/**
 * Child process: many plain `ws` consumers of the relay's firehose, so they
 * do not share the relay's CPU. Each counts messages and bytes and notes how
 * it ended (error frames such as ConsumerTooSlow, close codes).
 *
 * Commands: connect {url, count}, stats, close.
 */
import WebSocket from 'ws'
import { serveRpc } from './rpc.js'

interface Sub {
  ws: WebSocket
  messages: number
  bytes: number
  closedCode: number | null
  errorFrames: number
}

const subs: Sub[] = []
// An error frame starts with the CBOR header {op: -1}: a1 62 6f 70 20.
const ERROR_HEADER = Buffer.from([0xa1, 0x62, 0x6f, 0x70, 0x20])

function open(url: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { perMessageDeflate: false })
    const sub: Sub = { ws, messages: 0, bytes: 0, closedCode: null, errorFrames: 0 }
    subs.push(sub)
    ws.on('message', (data: Buffer) => {
      sub.messages++
      sub.bytes += data.length
      if (data.length >= 5 && data.subarray(0, 5).equals(ERROR_HEADER)) sub.errorFrames++
    })
    ws.once('open', () => resolve())
    ws.once('error', reject)
    ws.on('close', (code) => (sub.closedCode = code))
  })
}

serveRpc(
  {},
  {
    connect: async (a) => {
      const count = Number(a.count)
      for (let i = 0; i < count; i += 25) {
        await Promise.all(Array.from({ length: Math.min(25, count - i) }, () => open(String(a.url))))
      }
      return { open: subs.length }
    },
    stats: () => {
      const messages = subs.map((s) => s.messages)
      return {
        consumers: subs.length,
        open: subs.filter((s) => s.closedCode === null).length,
        closed: subs.filter((s) => s.closedCode !== null).map((s) => s.closedCode),
        errorFrames: subs.reduce((n, s) => n + s.errorFrames, 0),
        totalMessages: messages.reduce((x, y) => x + y, 0),
        minMessages: messages.length ? Math.min(...messages) : 0,
        maxMessages: messages.length ? Math.max(...messages) : 0,
        totalBytes: subs.reduce((n, s) => n + s.bytes, 0),
        cpu: process.cpuUsage(),
      }
    },
    close: () => {
      for (const s of subs) s.ws.terminate()
      subs.length = 0
      return null
    },
  },
  async () => {
    for (const s of subs) s.ws.terminate()
  },
)
