import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { describeServer, DescribeServerError } from '../../src/crawler/describe-server.js'
import { createGuardedDispatcher } from '../../src/net/net-guard.js'

/** What the loopback host answers next. */
let answer: { status?: number; server?: string; body?: string; hang?: boolean } = {}
let server: Server
let hostname: string
const policy = { allowLoopback: true }
const dispatcher = createGuardedDispatcher({ allowLoopback: true, lookup: async () => [{ address: '127.0.0.1', family: 4 }] })

beforeAll(async () => {
  server = createServer((_req, res) => {
    if (answer.hang) return // never answers: the probe's timeout must end it
    res.writeHead(answer.status ?? 200, { 'Content-Type': 'application/json', Server: answer.server ?? 'fake-pds' })
    res.end(answer.body ?? '{"did":"did:web:x.test"}')
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  hostname = `localhost:${(server.address() as AddressInfo).port}`
})

afterAll(async () => {
  server.closeAllConnections()
  await new Promise((resolve) => server.close(resolve))
  await dispatcher.close()
})

async function failure(timeoutMs = 2_000): Promise<DescribeServerError> {
  try {
    await describeServer(hostname, false, { dispatcher, policy, timeoutMs })
  } catch (err) {
    if (err instanceof DescribeServerError) return err
    throw err
  }
  throw new Error('describeServer succeeded')
}

describe('describeServer', () => {
  it('returns the JSON body and the Server header', async () => {
    answer = { server: 'pds/1.2' }
    expect(await describeServer(hostname, false, { dispatcher, policy, timeoutMs: 2_000 })).toEqual({
      server: 'pds/1.2',
      body: { did: 'did:web:x.test' },
    })
  })

  it('names each failure, keeping the Server header of any response', async () => {
    answer = { status: 404, server: 'atrelay/1 (atproto-relay)' }
    expect(await failure()).toMatchObject({ reason: 'status', server: 'atrelay/1 (atproto-relay)' })
    answer = { body: 'not json' }
    expect(await failure()).toMatchObject({ reason: 'not-json', server: 'fake-pds' })
    answer = { body: '[1]' }
    expect((await failure()).reason).toBe('not-json')
    answer = { body: `"${'x'.repeat(70_000)}"`, server: 'atrelay/1 (atproto-relay)' }
    expect(await failure()).toMatchObject({ reason: 'too-large', server: 'atrelay/1 (atproto-relay)' })
    answer = { hang: true }
    expect(await failure(200)).toMatchObject({ reason: 'timeout', message: 'no answer within 0.2 s' })
  })

  it('refuses a host the SSRF guard forbids without contacting it', async () => {
    // A reserved TLD is refused before DNS: nothing leaves the machine.
    const err = await describeServer('printer.internal', true, { dispatcher, policy, timeoutMs: 2_000 }).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(DescribeServerError)
    expect(err).toMatchObject({ reason: 'forbidden', message: expect.stringContaining('printer.internal may not be contacted') })
  })
})
