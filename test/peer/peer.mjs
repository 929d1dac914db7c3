#!/usr/bin/env node
// A real atproto PLC (in memory) plus N real PDS instances (@atproto/dev-env 0.3.215,
// pds 0.4.217) in one process, for atrelay's end-to-end tests.
//
// Prints one JSON line on stdout when ready:
//   {"ready":true,"plcUrl":…,"pds":[{url,port,hostname,did}],"adminPassword":"admin-pass","controlUrl":…}
// Exits cleanly (closing servers, removing its temp directory) on SIGTERM, SIGINT or when
// stdin closes, so a parent that dies takes the peer with it.
//
// Env:
//   PEER_PDS_COUNT       number of PDS instances (default 2)
//   PEER_PDS_PORTS       comma list of ports (default: free ports)
//   PEER_PLC_PORT        PLC port (default: a free port)
//   PEER_CRAWLERS        comma list of crawler URLs the PDSes notify (default: none)
//   PEER_MAX_SUB_BUFFER  PDS maxSubscriptionBuffer (default 100000; PDS default is 500)
//   PEER_TMP_BASE        where the per-run temp dir is made (default /dev/shm if writable, else os.tmpdir())
//
// The control server (loopback, `controlUrl`) exposes what the dev PDS would have emailed
// (it uses a JSON mail transport): GET /mail?pds=<index>&to=<email> → [{template, token, to}].
// Account migration needs the `plc_operation` token from there.
import fs from 'node:fs'
import http from 'node:http'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { installLocalHandleResolver } from './local-handles.mjs'

const PDS_COUNT = intEnv('PEER_PDS_COUNT', 2)
const MAX_SUB_BUFFER = intEnv('PEER_MAX_SUB_BUFFER', 100_000)
const CRAWLERS = listEnv('PEER_CRAWLERS')
const PDS_PORTS = listEnv('PEER_PDS_PORTS').map(Number)
const PLC_PORT = process.env.PEER_PLC_PORT ? Number(process.env.PEER_PLC_PORT) : undefined

// dev-env puts each PDS's sqlite files and blobstore under os.tmpdir() and never deletes
// them, so point TMPDIR at a per-run directory before anything is created, and remove it on exit.
const tmpBase = process.env.PEER_TMP_BASE ?? (isWritableDir('/dev/shm') ? '/dev/shm' : os.tmpdir())
const runDir = fs.mkdtempSync(path.join(tmpBase, 'atrelay-peer-'))
process.env.TMPDIR = runDir
// Logs off unless the caller explicitly enables them.
process.env.LOG_ENABLED ??= 'false'

let shuttingDown = false
/** @type {Array<() => Promise<void>>} */
const closers = []

process.on('SIGTERM', () => shutdown(0))
process.on('SIGINT', () => shutdown(0))
process.stdin.on('end', () => shutdown(0))
process.stdin.on('close', () => shutdown(0))
process.stdin.resume()
process.on('uncaughtException', (err) => {
  process.stderr.write(`peer: uncaught exception: ${err?.stack ?? err}\n`)
  shutdown(1)
})
process.on('unhandledRejection', (err) => {
  process.stderr.write(`peer: unhandled rejection: ${err?.stack ?? err}\n`)
  shutdown(1)
})

try {
  await main()
} catch (err) {
  process.stderr.write(`peer: start failed: ${err?.stack ?? err}\n`)
  await shutdown(1)
}

async function main() {
  const { TestPlc, TestPds } = await import('@atproto/dev-env')

  const plcPort = PLC_PORT ?? (await freePort())
  const plc = await TestPlc.create({ port: plcPort })
  closers.push(() => plc.close())

  const pdses = []
  const mail = [] // per PDS: [{template, to, token, params}]
  for (let i = 0; i < PDS_COUNT; i++) {
    // Never `port: undefined`: dev-env spreads config over its chosen port and would fall back to 2583.
    const port = PDS_PORTS[i] ?? (await freePort())
    const pds = await TestPds.create({
      didPlcUrl: plc.url,
      port,
      maxSubscriptionBuffer: MAX_SUB_BUFFER,
      ...(CRAWLERS.length > 0 ? { crawlers: CRAWLERS } : {}),
    })
    closers.push(() => pds.close())
    pdses.push(pds)
    mail.push(captureMail(pds))
  }
  // Handles under .test/.example resolve through the PDSes themselves, never DNS/HTTPS.
  for (const pds of pdses) installLocalHandleResolver(pds.ctx.idResolver, pdses.map((p) => p.url))

  const control = await startControlServer(mail)
  closers.push(() => new Promise((resolve) => control.server.close(() => resolve())))

  process.stdout.write(
    JSON.stringify({
      ready: true,
      plcUrl: plc.url,
      pds: pdses.map((p) => ({
        url: p.url,
        port: p.port,
        hostname: `localhost:${p.port}`,
        did: p.ctx.cfg.service.did,
      })),
      adminPassword: 'admin-pass',
      controlUrl: control.url,
      tmpDir: runDir,
    }) + '\n',
  )
}

/** Records every mail the PDS would send (templates carry tokens, e.g. plc_operation). */
function captureMail(pds) {
  const sent = []
  const mailer = pds.ctx.mailer
  mailer.sendTemplate = async (template, params, mailOpts) => {
    sent.push({ template, to: mailOpts?.to ?? null, token: params?.token ?? null, params })
  }
  return sent
}

function startControlServer(mail) {
  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://127.0.0.1')
    if (req.method === 'GET' && url.pathname === '/mail') {
      const index = Number(url.searchParams.get('pds') ?? '0')
      const to = url.searchParams.get('to')
      const list = (mail[index] ?? []).filter((m) => to === null || m.to === to)
      res.writeHead(200, { 'content-type': 'application/json' })
      res.end(JSON.stringify(list.map(({ template, to, token }) => ({ template, to, token }))))
      return
    }
    if (req.method === 'GET' && url.pathname === '/health') {
      res.writeHead(200, { 'content-type': 'application/json' })
      res.end('{"ok":true}')
      return
    }
    res.writeHead(404).end()
  })
  return new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const { port } = /** @type {net.AddressInfo} */ (server.address())
      resolve({ server, url: `http://127.0.0.1:${port}` })
    })
  })
}

async function shutdown(code) {
  if (shuttingDown) return
  shuttingDown = true
  // Bound the shutdown: a hung close must not leave the process (or its temp dir) behind.
  const hardExit = setTimeout(() => {
    fs.rmSync(runDir, { recursive: true, force: true })
    process.exit(code || 1)
  }, 10_000)
  hardExit.unref()
  for (const close of closers.reverse()) {
    try {
      await close()
    } catch (err) {
      process.stderr.write(`peer: close failed: ${err?.stack ?? err}\n`)
    }
  }
  fs.rmSync(runDir, { recursive: true, force: true })
  process.exit(code)
}

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer()
    srv.once('error', reject)
    srv.listen(0, '127.0.0.1', () => {
      const { port } = /** @type {net.AddressInfo} */ (srv.address())
      srv.close(() => resolve(port))
    })
  })
}

function isWritableDir(dir) {
  try {
    fs.accessSync(dir, fs.constants.W_OK)
    return fs.statSync(dir).isDirectory()
  } catch {
    return false
  }
}

function intEnv(name, fallback) {
  const raw = process.env[name]
  if (raw === undefined || raw === '') return fallback
  const n = Number(raw)
  if (!Number.isInteger(n) || n < 0) throw new Error(`${name} must be a non-negative integer, got ${raw}`)
  return n
}

function listEnv(name) {
  const raw = process.env[name]
  return raw ? raw.split(',').map((s) => s.trim()).filter(Boolean) : []
}
