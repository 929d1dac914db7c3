import { readFileSync } from 'node:fs'
import { describe, expect, it } from 'vitest'
import { parseDidKey } from '../../src/atproto/keys.js'
import { extractHandle, parseDidDocument, parsePdsEndpoint } from '../../src/identity/did-doc.js'

const fixture = (path: string): unknown => JSON.parse(readFileSync(new URL(`../fixtures/${path}`, import.meta.url), 'utf8'))

type Doc = Record<string, unknown> & { verificationMethod: Record<string, unknown>[]; service: Record<string, unknown>[] }
const clone = (doc: unknown): Doc => structuredClone(doc) as Doc

const PLC_DID = 'did:plc:ewvi7nxzyoun6zhxrhs64oiz'
const current = fixture('indigo/identity/did_plc_doc.json')
const legacy = fixture('indigo/identity/did_plc_doc_legacy.json')

describe('parseDidDocument: fixture documents', () => {
  it('current form (absolute ids, Multikey)', () => {
    const r = parseDidDocument(PLC_DID, current)
    expect(r.status).toBe('ok')
    if (r.status !== 'ok') return
    expect(r.signingKey.curve).toBe('k256')
    expect(r.signingKey.didKey).toBe('did:key:zQ3shXjHeiBuRCKmM36cuYnm7YEMzhGnCmCyW92sRJ9pribSF')
    expect(r.pdsEndpoint).toBe('https://bsky.social')
    expect(r.pdsHost).toBe('bsky.social')
    expect(r.handle).toBe('atproto.com')
  })

  it('legacy form (relative ids, uncompressed EcdsaSecp256k1VerificationKey2019) gives the same key', () => {
    const r = parseDidDocument(PLC_DID, legacy)
    expect(r.status).toBe('ok')
    if (r.status !== 'ok') return
    expect(r.signingKey.didKey).toBe('did:key:zQ3shXjHeiBuRCKmM36cuYnm7YEMzhGnCmCyW92sRJ9pribSF')
    expect(r.pdsHost).toBe('bsky.social')
  })

  it('did:web fixture without an atproto key is no_key', () => {
    const r = parseDidDocument('did:web:discover.bsky.social', fixture('indigo/identity/did_web_doc.json'))
    expect(r.status).toBe('no_key')
  })

  it('PDS scenario documents (legacy form from @did-plc/server) match their PLC audit logs', () => {
    const scenario = fixture('pds-scenario/did-docs.json') as {
      pdsUrl: string
      docs: Record<string, { doc: unknown; auditLog: { operation: { verificationMethods: { atproto: string }; alsoKnownAs: string[] } }[] }>
    }
    const dids = Object.keys(scenario.docs)
    expect(dids.length).toBeGreaterThan(0)
    for (const did of dids) {
      const entry = scenario.docs[did]!
      const r = parseDidDocument(did, entry.doc)
      expect(r.status, did).toBe('ok')
      if (r.status !== 'ok') continue
      const lastOp = entry.auditLog[entry.auditLog.length - 1]!.operation
      expect(r.signingKey.didKey).toBe(lastOp.verificationMethods.atproto)
      expect(r.pdsEndpoint).toBe(scenario.pdsUrl)
      expect(r.pdsHost).toBe(new URL(scenario.pdsUrl).host)
      expect(`at://${r.handle}`).toBe(lastOp.alsoKnownAs[0])
    }
  })
})

describe('parseDidDocument: broken documents', () => {
  it('wrong or missing id → failed', () => {
    const doc = clone(current)
    doc.id = 'did:plc:aaaaaaaaaaaaaaaaaaaaaaaa'
    expect(parseDidDocument(PLC_DID, doc).status).toBe('failed')
    delete doc.id
    expect(parseDidDocument(PLC_DID, doc).status).toBe('failed')
    expect(parseDidDocument(PLC_DID, null).status).toBe('failed')
    expect(parseDidDocument(PLC_DID, [current]).status).toBe('failed')
    expect(parseDidDocument(PLC_DID, 'did').status).toBe('failed')
  })

  it('no key, foreign controller, wrong id, unknown type, bad key → no_key', () => {
    const cases: ((d: Doc) => void)[] = [
      (d) => (d.verificationMethod = []),
      (d) => delete (d as Record<string, unknown>).verificationMethod,
      (d) => (d.verificationMethod[0]!.controller = 'did:plc:aaaaaaaaaaaaaaaaaaaaaaaa'),
      (d) => (d.verificationMethod[0]!.id = 'did:plc:aaaaaaaaaaaaaaaaaaaaaaaa#atproto'),
      (d) => (d.verificationMethod[0]!.id = '#other'),
      (d) => (d.verificationMethod[0]!.type = 'Ed25519VerificationKey2020'),
      (d) => (d.verificationMethod[0]!.publicKeyMultibase = 'zQ3shXjHeiBuRCKmM36cuYnm7YEMzhGnCmCyW92sRJ9pribS'),
      (d) => (d.verificationMethod[0]!.publicKeyMultibase = 'not-multibase'),
      (d) => delete d.verificationMethod[0]!.publicKeyMultibase,
    ]
    for (const [i, mutate] of cases.entries()) {
      const doc = clone(current)
      mutate(doc)
      const r = parseDidDocument(PLC_DID, doc)
      expect(r.status, `case ${i}`).toBe('no_key')
      if (r.status !== 'ok') expect(r.error.length).toBeGreaterThan(0)
    }
  })

  it('no pds, wrong type, bad endpoints → no_pds', () => {
    const cases: ((d: Doc) => void)[] = [
      (d) => (d.service = []),
      (d) => delete (d as Record<string, unknown>).service,
      (d) => (d.service[0]!.id = '#bsky_fg'),
      (d) => (d.service[0]!.type = 'BskyFeedGenerator'),
      (d) => (d.service[0]!.serviceEndpoint = 'https://bsky.social/xrpc'),
      (d) => (d.service[0]!.serviceEndpoint = 'wss://bsky.social'),
      (d) => (d.service[0]!.serviceEndpoint = 'bsky.social'),
      (d) => (d.service[0]!.serviceEndpoint = { uri: 'https://bsky.social' }),
    ]
    for (const [i, mutate] of cases.entries()) {
      const doc = clone(current)
      mutate(doc)
      expect(parseDidDocument(PLC_DID, doc).status, `case ${i}`).toBe('no_pds')
    }
  })

  it('a key on the second entry and absolute service id are found', () => {
    const doc = clone(current)
    doc.verificationMethod.unshift({ id: `${PLC_DID}#other`, type: 'Multikey', controller: PLC_DID, publicKeyMultibase: 'zzz' })
    doc.service = [{ id: `${PLC_DID}#atproto_pds`, type: 'AtprotoPersonalDataServer', serviceEndpoint: 'https://PDS.Example.com:8443/' }]
    const r = parseDidDocument(PLC_DID, doc)
    expect(r.status).toBe('ok')
    if (r.status === 'ok') {
      expect(r.pdsEndpoint).toBe('https://pds.example.com:8443')
      expect(r.pdsHost).toBe('pds.example.com:8443')
    }
  })

  it('missing or invalid handle claims give a null handle, not a failure', () => {
    const doc = clone(current)
    doc.alsoKnownAs = ['https://example.com', 'at://Alice.Example.com', 'at://bob.example.com']
    const r = parseDidDocument(PLC_DID, doc)
    expect(r.status === 'ok' && r.handle).toBe('alice.example.com')
    expect(extractHandle(['at://not a handle'])).toBeNull()
    expect(extractHandle(undefined)).toBeNull()
    expect(extractHandle([])).toBeNull()
  })
})

describe('parsePdsEndpoint', () => {
  it('normalises origins and rejects paths, queries, credentials and other schemes', () => {
    expect(parsePdsEndpoint('https://bsky.social')).toEqual({ endpoint: 'https://bsky.social', host: 'bsky.social' })
    expect(parsePdsEndpoint('https://bsky.social:443/')).toEqual({ endpoint: 'https://bsky.social', host: 'bsky.social' })
    expect(parsePdsEndpoint('http://localhost:2583')).toEqual({ endpoint: 'http://localhost:2583', host: 'localhost:2583' })
    for (const bad of ['https://a.com/p', 'https://a.com?x=1', 'https://a.com#f', 'https://u:p@a.com', 'ftp://a.com', '', 'nope']) {
      expect(parsePdsEndpoint(bad), bad).toBeNull()
    }
  })

  it('round-trips keys through did:key (what the identity table stores)', () => {
    const r = parseDidDocument(PLC_DID, legacy)
    if (r.status !== 'ok') throw new Error('fixture should parse')
    expect(parseDidKey(r.signingKey.didKey).didKey).toBe(r.signingKey.didKey)
  })
})
