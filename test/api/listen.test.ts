import { afterAll, describe, expect, it } from 'vitest'
import { Registry } from 'prom-client'
import { HttpServer } from '../../src/api/http-server.js'
import { MetricsServer } from '../../src/api/metrics-server.js'
import { createLogger } from '../../src/logger.js'

describe('listening', () => {
  const http = new HttpServer(createLogger('silent'))
  const metrics = new MetricsServer(new Registry())
  afterAll(async () => {
    await http.close(100)
    await metrics.close()
  })

  it('both servers report their port, and a port in use is a rejected listen, not a stray error event', async () => {
    const address = await http.listen({ host: '127.0.0.1', port: 0 })
    expect(address.port).toBeGreaterThan(0)
    await expect(metrics.listen({ host: '127.0.0.1', port: address.port })).rejects.toMatchObject({ code: 'EADDRINUSE' })
    const metricsAddress = await metrics.listen({ host: '127.0.0.1', port: 0 })
    expect(metricsAddress.port).not.toBe(address.port)
    const res = await fetch(`http://127.0.0.1:${metricsAddress.port}/metrics`)
    expect(res.status).toBe(200)
  })
})
