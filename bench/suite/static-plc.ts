/**
 * A static DID-document server for the benchmarks: GET /<did> answers the
 * document the PLC directory would serve for a corpus account (Multikey form,
 * the account's final handle, signing key and fake host). The real
 * `@did-plc/server` (mock DB, express) answers only ~130–230 resolutions/s on
 * the 2-core bench machine, below what the corpus needs once the relay's own
 * PLC rate limit is lifted, and its timeouts would be measured instead of the relay.
 */
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { CorpusAccount } from '../corpus/store.js'

export class StaticPlc {
  private constructor(
    private readonly server: Server,
    readonly url: string,
  ) {}

  /** One document per account, naming `pdsUrl` (the fake host serving it) as its PDS. */
  static async start(entries: Iterable<{ account: CorpusAccount; pdsUrl: string }>): Promise<StaticPlc> {
    const docs = new Map<string, string>()
    for (const { account: a, pdsUrl } of entries) {
      docs.set(
        a.did,
        JSON.stringify({
          '@context': ['https://www.w3.org/ns/did/v1', 'https://w3id.org/security/multikey/v1'],
          id: a.did,
          alsoKnownAs: [`at://${a.handle}`],
          verificationMethod: [{ id: `${a.did}#atproto`, type: 'Multikey', controller: a.did, publicKeyMultibase: a.signingKey.slice('did:key:'.length) }],
          service: [{ id: '#atproto_pds', type: 'AtprotoPersonalDataServer', serviceEndpoint: pdsUrl }],
        }),
      )
    }
    const server = createServer((req, res) => {
      const did = decodeURIComponent((req.url ?? '/').slice(1))
      const doc = docs.get(did)
      if (req.method !== 'GET' || doc === undefined) {
        res.writeHead(404, { 'content-type': 'application/json' })
        res.end(JSON.stringify({ message: `DID not registered: ${did}` }))
        return
      }
      res.writeHead(200, { 'content-type': 'application/did+ld+json', 'content-length': Buffer.byteLength(doc) })
      res.end(doc)
    })
    server.keepAliveTimeout = 30_000
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(0, '127.0.0.1', () => resolve())
    })
    return new StaticPlc(server, `http://localhost:${(server.address() as AddressInfo).port}`)
  }

  async close(): Promise<void> {
    await new Promise<void>((resolve) => {
      this.server.close(() => resolve())
      this.server.closeAllConnections()
    })
  }
}
