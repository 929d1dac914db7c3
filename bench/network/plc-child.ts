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

interface Entry {
  did: string
  handle: string
  key: string
  pds: string
}

const docs = new Map<string, string>()
let resolutions = 0
let notFound = 0

function doc(e: Entry): string {
  return JSON.stringify({
    '@context': ['https://www.w3.org/ns/did/v1', 'https://w3id.org/security/multikey/v1'],
    id: e.did,
    alsoKnownAs: [`at://${e.handle}`],
    verificationMethod: [{ id: `${e.did}#atproto`, type: 'Multikey', controller: e.did, publicKeyMultibase: e.key.slice('did:key:'.length) }],
    service: [{ id: '#atproto_pds', type: 'AtprotoPersonalDataServer', serviceEndpoint: e.pds }],
  })
}

const server = createServer((req, res) => {
  if (req.method === 'POST' && req.url === '/register') {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      for (const e of JSON.parse(Buffer.concat(chunks).toString('utf8')) as Entry[]) docs.set(e.did, doc(e))
      res.writeHead(204)
      res.end()
    })
    return
  }
  const did = decodeURIComponent((req.url ?? '/').slice(1))
  resolutions++
  const body = docs.get(did)
  if (req.method !== 'GET' || body === undefined) {
    notFound++
    res.writeHead(404, { 'content-type': 'application/json' })
    res.end(JSON.stringify({ message: `DID not registered: ${did}` }))
    return
  }
  res.writeHead(200, { 'content-type': 'application/did+ld+json', 'content-length': Buffer.byteLength(body) })
  res.end(body)
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
