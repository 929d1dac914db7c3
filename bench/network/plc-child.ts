/**
 * Child process: the PLC stand-in on loopback. Host processes register their
 * accounts' documents (POST /register, JSON [{did, handle, key, pds}]) before
 * those accounts post anything; GET /<did> answers the document as the PLC
 * directory would. Every GET is a resolution that got past the relay's caches,
 * so `stats` reports them (resolutions/s = the relay's identity cache misses).
 *
 *   node --import tsx bench/network/plc-child.ts      (ready line: {"ready":true,"url":…})
 */
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { serveRpc } from '../suite/rpc.js'
import { answerDidDocument, didDocumentJson } from '../suite/static-plc.js'

interface Entry {
  did: string
  handle: string
  key: string
  pds: string
}

const docs = new Map<string, string>()
let resolutions = 0
let notFound = 0

const server = createServer((req, res) => {
  if (req.method === 'POST' && req.url === '/register') {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      for (const e of JSON.parse(Buffer.concat(chunks).toString('utf8')) as Entry[]) docs.set(e.did, didDocumentJson({ did: e.did, handle: e.handle, signingKey: e.key, pds: e.pds }))
      res.writeHead(204)
      res.end()
    })
    return
  }
  resolutions++
  if (!answerDidDocument(req, res, docs)) notFound++
})
server.keepAliveTimeout = 60_000
await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()))
const port = (server.address() as AddressInfo).port

serveRpc(
  { url: `http://localhost:${port}`, registerUrl: `http://127.0.0.1:${port}/register` },
  { stats: () => ({ resolutions, notFound, documents: docs.size }) },
  async () => {
    server.closeAllConnections()
    server.close()
  },
)
