/** Loopback ports nothing listens on: a relay asked to crawl `localhost:<port>` is refused at once, with no traffic leaving the machine. */
import { connect } from 'node:net'

function refused(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host, port })
    socket.setTimeout(1000)
    socket.once('connect', () => {
      socket.destroy()
      resolve(false)
    })
    socket.once('timeout', () => {
      socket.destroy()
      resolve(false)
    })
    // ECONNREFUSED, or no ::1 on this machine: either way nothing answers there.
    socket.once('error', () => resolve(true))
  })
}

/** `count` ports from `from` upwards that refuse connections on 127.0.0.1 and ::1 (checked now; a port may open later, rarely). */
export async function closedLocalPorts(count: number, from: number): Promise<number[]> {
  const out: number[] = []
  for (let port = from; out.length < count; port += 50) {
    if (port + 50 > 65_535) throw new Error(`found only ${out.length} closed loopback ports from ${from}`)
    const batch = Array.from({ length: 50 }, (_, i) => port + i)
    const closed = await Promise.all(batch.map(async (p) => (await refused('127.0.0.1', p)) && (await refused('::1', p))))
    for (let i = 0; i < batch.length && out.length < count; i++) if (closed[i]) out.push(batch[i]!)
  }
  return out
}
