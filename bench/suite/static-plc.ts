/**
 * A static DID-document server for the benchmarks: GET /<did> answers the
 * document the PLC directory would serve for a corpus account (Multikey form,
 * the account's final handle, signing key and fake host). The real
 * `@did-plc/server` (mock DB, express) answers only ~130–230 resolutions/s on
 * the 2-core bench machine, below what the corpus needs once the relay's own
 * PLC rate limit is lifted, and its timeouts would be measured instead of the relay.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { CorpusAccount } from '../corpus/store.js'

/** The DID document the PLC directory serves (Multikey form), as JSON text. */
export function didDocumentJson(e: { did: string; handle: string; signingKey: string; pds: string }): string {
  return JSON.stringify({
    '@context': ['https://www.w3.org/ns/did/v1', 'https://w3id.org/security/multikey/v1'],
    id: e.did,
    alsoKnownAs: [`at://${e.handle}`],
    verificationMethod: [{ id: `${e.did}#atproto`, type: 'Multikey', controller: e.did, publicKeyMultibase: e.signingKey.slice('did:key:'.length) }],
    service: [{ id: '#atproto_pds', type: 'AtprotoPersonalDataServer', serviceEndpoint: e.pds }],
  })
}

/** Answers GET /<did> from `docs` as the PLC directory would (404 for any other request); true if it found one. */
export function answerDidDocument(req: IncomingMessage, res: ServerResponse, docs: ReadonlyMap<string, string>): boolean {
  const did = decodeURIComponent((req.url ?? '/').slice(1))
  const doc = docs.get(did)
  if (req.method !== 'GET' || doc === undefined) {
    res.writeHead(404, { 'content-type': 'application/json' })
    res.end(JSON.stringify({ message: `DID not registered: ${did}` }))
    return false
  }
  res.writeHead(200, { 'content-type': 'application/did+ld+json', 'content-length': Buffer.byteLength(doc) })
  res.end(doc)
  return true
}

export class StaticPlc {
  private constructor(
    private readonly server: Server,
    readonly url: string,
  ) {}

  /** One document per account, naming `pdsUrl` (the fake host serving it) as its PDS. */
  static async start(entries: Iterable<{ account: CorpusAccount; pdsUrl: string }>): Promise<StaticPlc> {
    const docs = new Map<string, string>()
    for (const { account: a, pdsUrl } of entries) docs.set(a.did, didDocumentJson({ did: a.did, handle: a.handle, signingKey: a.signingKey, pds: pdsUrl }))
    const server = createServer((req, res) => answerDidDocument(req, res, docs))
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
