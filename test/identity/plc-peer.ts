/**
 * A real PLC directory (`@did-plc/server` with its in-memory database) on
 * loopback, counting the DID-document requests it answers.
 */
import { createServer, type Server } from 'node:http'
import { Secp256k1Keypair } from '@atproto/crypto'
import { Client } from '@did-plc/lib'
import * as plc from '@did-plc/server'
import { freePort } from '../helpers/ports.js'

export interface PlcPeer {
  url: string
  client: Client
  /** GET /<did> requests seen, per DID. */
  docRequests: Map<string, number>
  totalDocRequests(): number
  /** Creates a DID whose PDS is `pds`; returns it with its keys. */
  createAccount(handle: string, pds: string): Promise<PlcAccount>
  close(): Promise<void>
}

export interface PlcAccount {
  did: string
  rotationKey: Secp256k1Keypair
  signingKey: Secp256k1Keypair
}


const DOC_PATH = /^\/(did:plc:[a-z2-7]{24})$/

export async function startPlcPeer(): Promise<PlcPeer> {
  const port = await freePort()
  const db = plc.Database.mock()
  const app = plc.PlcServer.create({ db, port }).app
  const docRequests = new Map<string, number>()
  // Served by our own listener so it binds to 127.0.0.1 only and we can count requests.
  const server: Server = createServer((req, res) => {
    const m = req.method === 'GET' ? DOC_PATH.exec(req.url ?? '') : null
    if (m) docRequests.set(m[1]!, (docRequests.get(m[1]!) ?? 0) + 1)
    app(req, res)
  })
  // Longer than any pause in a test run: the PLC client (axios, keep-alive) must never reuse a socket the server is closing.
  server.keepAliveTimeout = 120_000
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve))
  const url = `http://127.0.0.1:${port}`
  const client = new Client(url)
  return {
    url,
    client,
    docRequests,
    totalDocRequests: () => [...docRequests.values()].reduce((a, b) => a + b, 0),
    async createAccount(handle, pds) {
      const rotationKey = await Secp256k1Keypair.create()
      const signingKey = await Secp256k1Keypair.create()
      const did = await client.createDid({ signingKey: signingKey.did(), handle, pds, rotationKeys: [rotationKey.did()], signer: rotationKey })
      return { did, rotationKey, signingKey }
    },
    async close() {
      server.closeAllConnections()
      await new Promise((resolve) => server.close(resolve))
      await db.close()
    },
  }
}
