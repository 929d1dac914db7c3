#!/usr/bin/env node
// An independent consumer of any com.atproto.sync.subscribeRepos endpoint (a PDS or the relay).
//
// Two readers on two sockets:
//  * @atproto/sync's Firehose with unauthenticatedCommits:false — every commit's signature is
//    checked against the DID's key from the PLC and every op's MST proof is verified;
//  * a raw `ws` reader that decodes each frame with @ipld/dag-cbor (strict: exactly two
//    DAG-CBOR items, header then body), checks the CAR root of #commit/#sync blocks and that
//    seqs strictly increase.
// Library: startConsumer(opts). CLI: see the bottom of this file.
import syncPkg from '@atproto/sync'
import identityPkg from '@atproto/identity'
import * as dagCbor from '@ipld/dag-cbor'
import { decodeFirst } from 'cborg'
import WebSocket from 'ws'
import { installLocalHandleResolver } from './local-handles.mjs'

const { Firehose, MemoryRunner } = syncPkg
const { IdResolver, MemoryCache } = identityPkg

const SEQUENCED = new Set(['#commit', '#sync', '#identity', '#account'])

/**
 * @param {{
 *   service: string,            // ws://host:port (or http://…); /xrpc/com.atproto.sync.subscribeRepos is appended
 *   plcUrl: string,             // DID resolution for signature checks
 *   startCursor?: number,       // default 0
 *   handlePdsUrls?: string[],   // verify handles via these PDSes' /.well-known; omitted → handles unauthenticated
 *   raw?: boolean,              // run the raw reader (default true)
 *   firehose?: boolean,         // run the verifying Firehose (default true)
 *   onEvent?: (e: object) => void,
 * }} opts
 */
export function startConsumer(opts) {
  const service = opts.service.replace(/^http/, 'ws').replace(/\/+$/, '')
  const startCursor = opts.startCursor ?? 0
  const state = {
    frames: [], // raw frame summaries
    rawErrors: [], // decode / ordering / protocol problems seen by the raw reader
    events: [], // Firehose (verified) events
    errors: [], // Firehose errors (validation, parse, subscription, handler)
    lastRawSeq: -1,
  }
  const stoppers = []

  if (opts.raw !== false) stoppers.push(startRawReader(service, startCursor, state, opts.onEvent))
  let runner
  let firehoseEnded = false
  if (opts.firehose !== false) {
    // The resolver's default 3 s timeout is not met by a loopback PLC on a loaded 2-core machine:
    // a slow lookup then shows up as a validation error of a valid event.
    const idResolver = new IdResolver({ plcUrl: opts.plcUrl, didCache: new MemoryCache(), fetch: globalThis.fetch, timeout: 30_000 })
    if (opts.handlePdsUrls) installLocalHandleResolver(idResolver, opts.handlePdsUrls)
    runner = new MemoryRunner({ startCursor })
    const firehose = new Firehose({
      idResolver,
      service,
      runner,
      unauthenticatedCommits: false,
      unauthenticatedHandles: !opts.handlePdsUrls,
      subscriptionReconnectDelay: 500,
      handleEvent: async (evt) => {
        const e = summarizeFirehoseEvent(evt)
        state.events.push(e)
        opts.onEvent?.({ source: 'firehose', ...e })
      },
      onError: (err) => {
        const e = {
          name: err?.name ?? 'Error',
          message: String(err?.message ?? err),
          cause: err?.cause ? String(err.cause?.message ?? err.cause) : undefined,
          seq: err?.value?.seq ?? err?.event?.seq ?? err?.write?.seq,
        }
        state.errors.push(e)
        opts.onEvent?.({ source: 'firehose-error', ...e })
      },
    })
    // start() also returns (without error) when the server closes the socket cleanly, e.g. a
    // relay shutting down with 1001: @atproto/sync 0.1.40 then neither reconnects nor resolves
    // destroy(), so stop() waits for whichever comes first.
    const started = firehose.start().finally(() => {
      firehoseEnded = true
    })
    stoppers.push(async () => {
      await Promise.race([firehose.destroy(), started])
      await runner.destroy()
    })
  }

  // What a timed-out wait reports, so a failure says which reader stopped and why.
  const describeProgress = () =>
    JSON.stringify({
      rawFrames: state.frames.length,
      rawTypes: state.frames.reduce((n, f) => ({ ...n, [f.type]: (n[f.type] ?? 0) + 1 }), {}),
      lastRawSeq: state.lastRawSeq,
      firehoseCursor: runner?.getCursor() ?? null,
      firehoseEvents: state.events.length,
      firehoseEnded,
      rawErrors: state.rawErrors.slice(-3),
      firehoseErrors: state.errors.slice(-3),
    })

  return {
    state,
    /** The Firehose's subscription ended by itself (the server closed the socket cleanly). */
    firehoseEnded: () => firehoseEnded,
    /** Seq up to which the Firehose has fully processed (verified) events. */
    firehoseCursor: () => runner?.getCursor() ?? null,
    /** Both readers have processed everything the raw reader has seen so far. */
    caughtUp: () => state.lastRawSeq >= 0 && (runner === undefined || (runner.getCursor() ?? -1) >= state.lastRawSeq),
    /** Polls `predicate` until true; throws after `timeoutMs`. */
    async waitUntil(predicate, timeoutMs = 15_000, label = 'condition') {
      const deadline = Date.now() + timeoutMs
      while (!predicate(state)) {
        if (Date.now() > deadline) {
          throw new Error(`consumer: timed out after ${timeoutMs} ms waiting for ${label}; ${describeProgress()}`)
        }
        await new Promise((r) => setTimeout(r, 25))
      }
    },
    async stop() {
      for (const stop of stoppers) await stop()
      return state
    },
  }
}

function startRawReader(service, startCursor, state, onEvent) {
  const ws = new WebSocket(`${service}/xrpc/com.atproto.sync.subscribeRepos?cursor=${startCursor}`)
  let stopping = false
  ws.binaryType = 'nodebuffer'
  ws.on('message', (data, isBinary) => {
    if (!isBinary) {
      state.rawErrors.push({ reason: 'text_frame', message: 'received a text frame' })
      return
    }
    const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength)
    let header, body
    try {
      const [h, rest] = decodeFirst(bytes, dagCbor.decodeOptions)
      header = h
      body = dagCbor.decode(rest) // strict: throws if anything follows the body
    } catch (err) {
      state.rawErrors.push({ reason: 'decode', message: String(err?.message ?? err), bytes: bytes.byteLength })
      return
    }
    const frame = summarizeFrame(header, body, bytes.byteLength, state)
    state.frames.push(frame)
    onEvent?.({ source: 'raw', ...frame })
  })
  ws.on('error', (err) => state.rawErrors.push({ reason: 'socket', message: String(err?.message ?? err) }))
  ws.on('close', (code) => {
    if (!stopping) state.rawErrors.push({ reason: 'closed', message: `socket closed unexpectedly (code ${code})` })
  })
  return () =>
    new Promise((resolve) => {
      stopping = true
      if (ws.readyState === WebSocket.CLOSED) return resolve()
      const t = setTimeout(() => {
        ws.terminate()
        resolve()
      }, 2000)
      ws.once('close', () => {
        clearTimeout(t)
        resolve()
      })
      ws.close()
    })
}

function summarizeFrame(header, body, size, state) {
  if (header?.op === -1) {
    state.rawErrors.push({ reason: 'error_frame', message: `${body?.error}: ${body?.message ?? ''}` })
    return { type: 'error', error: body?.error, message: body?.message, size }
  }
  if (header?.op !== 1 || typeof header?.t !== 'string') {
    state.rawErrors.push({ reason: 'bad_header', message: JSON.stringify(header) })
    return { type: 'invalid', size }
  }
  const type = header.t
  const f = { type, size }
  if (SEQUENCED.has(type)) {
    f.seq = body.seq
    if (!Number.isSafeInteger(body.seq)) {
      state.rawErrors.push({ reason: 'bad_seq', message: `${type} seq ${body.seq}` })
    } else if (body.seq <= state.lastRawSeq) {
      state.rawErrors.push({ reason: 'seq_order', message: `seq ${body.seq} after ${state.lastRawSeq}` })
    } else {
      state.lastRawSeq = body.seq
    }
    f.time = body.time
  }
  if (type === '#commit') {
    f.did = body.repo
    f.rev = body.rev
    f.since = body.since ?? null
    f.commit = cidStr(body.commit)
    f.prevData = body.prevData ? cidStr(body.prevData) : undefined
    f.tooBig = body.tooBig
    f.ops = (body.ops ?? []).map((op) => ({
      action: op.action,
      path: op.path,
      cid: op.cid ? cidStr(op.cid) : null,
      ...(op.prev ? { prev: cidStr(op.prev) } : {}),
    }))
    const car = readCarRoot(body.blocks, state, f)
    f.carRoot = car.root
    f.commitRev = car.commit?.rev
    if (f.carRoot !== f.commit) state.rawErrors.push({ reason: 'car_root', message: `seq ${f.seq}: CAR root ${f.carRoot} != commit ${f.commit}` })
    if (car.commit && (car.commit.did !== f.did || car.commit.rev !== f.rev)) {
      state.rawErrors.push({ reason: 'commit_block', message: `seq ${f.seq}: commit block did/rev ${car.commit.did}/${car.commit.rev} != frame ${f.did}/${f.rev}` })
    }
  } else if (type === '#sync') {
    f.did = body.did
    f.rev = body.rev
    const car = readCarRoot(body.blocks, state, f)
    f.carRoot = car.root
    // Compared by check.mjs: a #sync's body rev should be its commit's rev.
    f.commitRev = car.commit?.rev
  } else if (type === '#identity') {
    f.did = body.did
    f.handle = body.handle
  } else if (type === '#account') {
    f.did = body.did
    f.active = body.active
    f.status = body.status
  } else if (type === '#info') {
    f.name = body.name
    f.message = body.message
  }
  return f
}

/**
 * Reads a CARv1 (varint header length, DAG-CBOR {version, roots}, then varint-framed
 * CID+data sections): returns the root CID and the decoded root block (the signed commit).
 */
function readCarRoot(blocks, state, f) {
  try {
    if (!(blocks instanceof Uint8Array)) throw new Error('blocks is not bytes')
    let pos = 0
    const varint = () => {
      let value = 0
      for (let shift = 0; shift < 63; shift += 7) {
        if (pos >= blocks.length) throw new Error('truncated varint')
        const b = blocks[pos++]
        value += (b & 0x7f) * 2 ** shift
        if ((b & 0x80) === 0) return value
      }
      throw new Error('varint too long')
    }
    const headerLen = varint()
    const header = dagCbor.decode(blocks.subarray(pos, pos + headerLen))
    pos += headerLen
    if (header.version !== 1 || !Array.isArray(header.roots) || header.roots.length !== 1) throw new Error('bad CAR header')
    const root = header.roots[0]
    let rootBlock
    let count = 0
    while (pos < blocks.length && count++ < 100_000) {
      const sectionLen = varint()
      const end = pos + sectionLen
      if (end > blocks.length) throw new Error('truncated CAR section')
      const cidStart = pos
      if (varint() !== 1) throw new Error('CAR block CID is not CIDv1')
      varint() // codec
      varint() // multihash code
      const digestLen = varint()
      pos += digestLen
      const cidBytes = blocks.subarray(cidStart, pos)
      if (!rootBlock && equalBytes(cidBytes, root.bytes)) rootBlock = dagCbor.decode(blocks.subarray(pos, end))
      pos = end
    }
    if (!rootBlock) throw new Error('CAR does not contain its root block')
    return { root: cidStr(root), commit: rootBlock }
  } catch (err) {
    state.rawErrors.push({ reason: 'car', message: `seq ${f.seq}: ${err?.message ?? err}` })
    return { root: null, commit: null }
  }
}

function equalBytes(a, b) {
  if (a.length !== b.length) return false
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false
  return true
}

function summarizeFirehoseEvent(evt) {
  const e = { event: evt.event, seq: evt.seq, did: evt.did, time: evt.time }
  if (evt.event === 'create' || evt.event === 'update' || evt.event === 'delete') {
    e.path = `${evt.collection}/${evt.rkey}`
    e.cid = evt.event === 'delete' ? null : cidStr(evt.cid)
    e.rev = evt.rev
    e.commit = cidStr(evt.commit)
  } else if (evt.event === 'identity') {
    e.handle = evt.handle
  } else if (evt.event === 'account') {
    e.active = evt.active
    e.status = evt.status
  } else if (evt.event === 'sync') {
    e.rev = evt.rev
    e.cid = cidStr(evt.cid)
  }
  return e
}

function cidStr(cid) {
  return cid === null || cid === undefined ? null : cid.toString()
}

// CLI: node consumer.mjs --service ws://localhost:PORT --plc http://localhost:PORT [--cursor N]
//        [--pds http://localhost:P1,http://localhost:P2]
// Prints every raw frame / verified event / error as a JSON line; on SIGTERM, SIGINT or
// stdin end prints {"done":true,…counts} and exits.
if (import.meta.url === `file://${process.argv[1]}`) {
  const args = Object.fromEntries(
    process.argv.slice(2).reduce((acc, a, i, all) => (a.startsWith('--') ? [...acc, [a.slice(2), all[i + 1]]] : acc), []),
  )
  if (!args.service || !args.plc) {
    process.stderr.write('usage: consumer.mjs --service ws://… --plc http://… [--cursor N] [--pds url,url]\n')
    process.exit(2)
  }
  const consumer = startConsumer({
    service: args.service,
    plcUrl: args.plc,
    startCursor: args.cursor ? Number(args.cursor) : 0,
    handlePdsUrls: args.pds ? args.pds.split(',') : undefined,
    onEvent: (e) => process.stdout.write(JSON.stringify(e) + '\n'),
  })
  let done = false
  const finish = async () => {
    if (done) return
    done = true
    const s = await consumer.stop()
    process.stdout.write(
      JSON.stringify({ done: true, frames: s.frames.length, events: s.events.length, errors: s.errors.length, rawErrors: s.rawErrors.length, lastRawSeq: s.lastRawSeq }) + '\n',
    )
    process.exit(s.errors.length + s.rawErrors.length === 0 ? 0 : 1)
  }
  process.on('SIGTERM', finish)
  process.on('SIGINT', finish)
  process.stdin.on('end', finish)
  process.stdin.resume()
}
