import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { verifyCommitEvent } from '../../src/atproto/verify.js'
import { parseDidDocument } from '../../src/identity/did-doc.js'
import { FakePds } from '../helpers/fake-pds.js'
import { decodeFrame, encodeEventFrame } from '../helpers/frames.js'
import { LoopbackPlc, PlcOpError } from '../helpers/loopback-plc.js'
import { TestAccount } from '../helpers/repo-builder.js'

describe('LoopbackPlc', () => {
  let pds: FakePds
  let other: FakePds
  let plc: LoopbackPlc

  beforeAll(async () => {
    // Hosts first: the PDS URL is part of the DID's genesis op.
    pds = await FakePds.start()
    other = await FakePds.start()
    plc = await LoopbackPlc.start()
  })
  afterAll(async () => {
    await plc.close()
    await pds.close()
    await other.close()
  })

  it('resolves a registered DID to a document pointing at the fake host, with a key that verifies its commits', async () => {
    for (const keyType of ['secp256k1', 'p256'] as const) {
      const account = await TestAccount.create({ keyType, pdsUrl: pds.url, handle: `${keyType}.test` })
      await plc.register(account)
      const doc = await plc.resolve(account.did)
      expect(doc.id).toBe(account.did)
      expect(doc.alsoKnownAs).toEqual([`at://${keyType}.test`])
      expect(doc.service).toEqual([{ id: '#atproto_pds', type: 'AtprotoPersonalDataServer', serviceEndpoint: pds.url }])

      const identity = parseDidDocument(account.did, doc)
      expect(identity).toMatchObject({ status: 'ok', pdsHost: pds.hostname, handle: `${keyType}.test` })
      if (identity.status !== 'ok') throw new Error('unreachable')
      await account.genesis()
      const commit = await account.createRecord('app.bsky.feed.post', { $type: 'app.bsky.feed.post', text: 'hi', createdAt: new Date().toISOString() })
      const body = decodeFrame(encodeEventFrame(commit, 1)).body
      expect(verifyCommitEvent(body, identity.signingKey, { strict: true, hasStoredHead: true }).ok).toBe(true)
    }
  })

  it('applies later ops (handle change, PDS move) and restores a DID into a fresh PLC by re-posting its ops', async () => {
    const account = await TestAccount.create({ pdsUrl: pds.url })
    await plc.register(account)
    const { plcOp } = await account.changeHandle('renamed.test')
    await plc.postOp(account.did, plcOp)
    await plc.postOp(account.did, await account.movePds(other.url))
    const doc = await plc.resolve(account.did)
    expect(doc.alsoKnownAs).toEqual(['at://renamed.test'])
    expect(doc.service).toEqual([{ id: '#atproto_pds', type: 'AtprotoPersonalDataServer', serviceEndpoint: other.url }])
    expect(await plc.auditLog(account.did)).toHaveLength(3)

    const fresh = await LoopbackPlc.start()
    const imported = await LoopbackPlc.start()
    try {
      await fresh.registerAll([{ did: account.did, ops: account.plcOps }])
      expect(await fresh.resolve(account.did)).toEqual(doc)
      // The trusted import gives the same document and the same op CIDs.
      await imported.importOps([{ did: account.did, ops: account.plcOps }])
      expect(await imported.resolve(account.did)).toEqual(doc)
      const cids = (log: unknown[]) => log.map((e) => (e as { cid: string }).cid)
      expect(cids(await imported.auditLog(account.did))).toEqual(cids(await fresh.auditLog(account.did)))
      // and the server accepts the next op on top of imported ones
      await imported.postOp(account.did, await account.movePds(pds.url))
      expect((await imported.resolve(account.did)).service).toEqual([{ id: '#atproto_pds', type: 'AtprotoPersonalDataServer', serviceEndpoint: pds.url }])
    } finally {
      await fresh.close()
      await imported.close()
    }
  })

  it('rejects a genesis op posted under a DID it does not hash to', async () => {
    const account = await TestAccount.create({ pdsUrl: pds.url })
    const impostor = await TestAccount.create({ pdsUrl: pds.url })
    await plc.register(account)
    await expect(plc.postOp(account.did, impostor.plcOps[0]!)).rejects.toBeInstanceOf(PlcOpError)
  })
})
