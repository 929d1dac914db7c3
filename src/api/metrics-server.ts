/** Prometheus metrics on their own listener (RELAY_METRICS_LISTEN), apart from public traffic. */
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { Registry } from 'prom-client'
import type { ListenAddress } from '../config.js'
import { listenOn } from './listen.js'

export class MetricsServer {
  private readonly server: Server

  constructor(registry: Registry) {
    this.server = createServer((req, res) => {
      if (req.url !== '/metrics' || (req.method !== 'GET' && req.method !== 'HEAD')) {
        res.writeHead(404, { 'Content-Type': 'text/plain' })
        res.end('metrics are at /metrics\n')
        return
      }
      registry
        .metrics()
        .then((body) => {
          res.writeHead(200, { 'Content-Type': registry.contentType })
          res.end(body)
        })
        .catch((err: unknown) => {
          res.writeHead(500, { 'Content-Type': 'text/plain' })
          res.end(`metrics collection failed: ${String(err)}\n`)
        })
    })
  }

  listen(address: ListenAddress): Promise<AddressInfo> {
    return listenOn(this.server, address)
  }

  async close(): Promise<void> {
    if (!this.server.listening) return
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()))
    this.server.closeAllConnections()
    await closed
  }
}
