/**
 * Requests the HTTP front refuses before any handler: over-long URLs (414),
 * over-long header sets (431) and unparsable requests (400), each answered
 * with a real HTTP response and an XRPC error body, never a dropped socket.
 */
import { connect } from 'node:net'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { HttpServer, MAX_URL_LENGTH } from '../../src/api/http-server.js'
import { createLogger } from '../../src/logger.js'

let http: HttpServer
let port: number

beforeAll(async () => {
  http = new HttpServer(createLogger('silent'))
  http.query('test.echo', ({ url }) => ({ json: { length: url.search.length } }))
  http.upgradeRoute('/xrpc/test.subscribe', (_req, socket) => socket.destroy())
  port = (await http.listen({ host: '127.0.0.1', port: 0 })).port
})

afterAll(() => http?.close())

/** Sends `head` as-is and reads the whole answer until the server closes or the answer is complete. */
function raw(head: string): Promise<{ status: number; headers: string; body: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1', () => socket.write(head))
    let data = ''
    const done = () => {
      const end = data.indexOf('\r\n\r\n')
      if (end < 0) return reject(new Error(`no HTTP response, got ${JSON.stringify(data.slice(0, 200))}`))
      const headers = data.slice(0, end)
      const body = data.slice(end + 4)
      resolve({ status: Number(/^HTTP\/1\.1 (\d{3})/.exec(headers)?.[1]), headers, body: body ? (JSON.parse(body) as Record<string, unknown>) : {} })
    }
    socket.setEncoding('utf8')
    socket.on('data', (chunk: string) => {
      data += chunk
      const end = data.indexOf('\r\n\r\n')
      const length = /content-length: (\d+)/i.exec(data.slice(0, end))?.[1]
      if (end >= 0 && length !== undefined && data.length - end - 4 >= Number(length)) {
        socket.destroy()
        done()
      }
    })
    socket.on('end', done)
    socket.on('error', reject)
  })
}

const get = (target: string, extra = '') => raw(`GET ${target} HTTP/1.1\r\nHost: 127.0.0.1\r\n${extra}Connection: close\r\n\r\n`)
const query = (length: number) => `/xrpc/test.echo?q=${'a'.repeat(length - '/xrpc/test.echo?q='.length)}`

describe('HTTP limits', () => {
  it('a URL at the limit is served', async () => {
    const res = await get(query(MAX_URL_LENGTH))
    expect(res.status).toBe(200)
    expect(res.body.length).toBe(MAX_URL_LENGTH - '/xrpc/test.echo'.length)
  })

  it('a URL over the limit gets 414 with an XRPC error body', async () => {
    const res = await get(query(MAX_URL_LENGTH + 1))
    expect(res.status).toBe(414)
    expect(res.body).toMatchObject({ error: 'URLTooLong', message: expect.stringContaining(String(MAX_URL_LENGTH)) })
  })

  it('a URL longer than the whole header limit still gets 414, not a dropped socket', async () => {
    const res = await get(query(40_000))
    expect(res.status).toBe(414)
    expect(res.body.error).toBe('URLTooLong')
  })

  it('an over-long header set gets 431', async () => {
    const res = await get('/xrpc/test.echo', `X-Filler: ${'b'.repeat(40_000)}\r\n`)
    expect(res.status).toBe(431)
    expect(res.body).toMatchObject({ error: 'HeadersTooLarge' })
  })

  it('many small headers over the limit get 431 too', async () => {
    const many = Array.from({ length: 600 }, (_, i) => `X-H${i}: ${'c'.repeat(40)}\r\n`).join('')
    expect((await get('/xrpc/test.echo', many)).status).toBe(431)
  })

  it('an unparsable request gets 400', async () => {
    const res = await raw('NOT AN HTTP REQUEST\r\n\r\n')
    expect(res.status).toBe(400)
    expect(res.body.error).toBe('InvalidRequest')
  })

  it('a WebSocket upgrade with an over-long URL gets 414', async () => {
    const res = await raw(
      `GET /xrpc/test.subscribe?cursor=${'1'.repeat(MAX_URL_LENGTH)} HTTP/1.1\r\nHost: 127.0.0.1\r\n` +
        'Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n',
    )
    expect(res.status).toBe(414)
  })
})
