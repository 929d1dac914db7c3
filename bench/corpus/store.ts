/**
 * On-disk corpus layout (one directory):
 *   manifest.json              parameters, host list (fixed ports), totals; written last = corpus complete
 *   host-NN.frames             the host's firehose, frame i has seq i+1: [u32 BE length][frame bytes]...
 *   host-NN.accounts.jsonl     one account per line: DID, keys, final repo state, signed PLC ops
 */
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import type * as plc from '@did-plc/lib'
import type { CorpusParams } from './params.js'

export interface CorpusEventCounts {
  commit: number
  sync: number
  identity: number
  account: number
}

export interface CorpusHost {
  index: number
  port: number
  url: string
  hostname: string
  framesFile: string
  accountsFile: string
  frames: number
  bytes: number
  accounts: number
  records: number
  events: CorpusEventCounts
}

export interface CorpusManifest {
  formatVersion: number
  paramsKey: string
  params: CorpusParams
  createdAt: string
  generationMs: number
  /** secp256k1 private key (hex) that is the sole rotation key of every DID: lets a fleet re-point DIDs to other ports. */
  rotationKeyHex: string
  hosts: CorpusHost[]
  totals: { accounts: number; frames: number; bytes: number; records: number; events: CorpusEventCounts }
}

export interface CorpusAccount {
  did: string
  host: number
  handle: string
  keyType: 'secp256k1' | 'p256'
  signingKey: string
  head: string
  rev: string
  active: boolean
  status?: string
  records: number
  commits: number
  plcOps: plc.Operation[]
}

export const MANIFEST_FILE = 'manifest.json'

export function hostFileNames(index: number): { framesFile: string; accountsFile: string } {
  const nn = String(index).padStart(2, '0')
  return { framesFile: `host-${nn}.frames`, accountsFile: `host-${nn}.accounts.jsonl` }
}

/** Writes length-prefixed frames; returns the file size. */
export function writeFramesFile(path: string, frames: readonly Uint8Array[]): number {
  let size = 0
  for (const f of frames) size += 4 + f.length
  const out = Buffer.allocUnsafe(size)
  let p = 0
  for (const f of frames) {
    out.writeUInt32BE(f.length, p)
    out.set(f, p + 4)
    p += 4 + f.length
  }
  writeFileSync(path, out)
  return size
}

/** Frames as views into one buffer read from disk. */
export function readFramesFile(path: string): Uint8Array[] {
  const buf = readFileSync(path)
  const frames: Uint8Array[] = []
  let p = 0
  while (p < buf.length) {
    if (p + 4 > buf.length) throw new Error(`${path}: truncated length prefix at byte ${p}`)
    const len = buf.readUInt32BE(p)
    if (p + 4 + len > buf.length) throw new Error(`${path}: truncated frame at byte ${p}`)
    frames.push(buf.subarray(p + 4, p + 4 + len))
    p += 4 + len
  }
  return frames
}

export function writeAccountsFile(path: string, accounts: readonly CorpusAccount[]): void {
  writeFileSync(path, accounts.map((a) => JSON.stringify(a)).join('\n') + '\n')
}

export function readAccountsFile(path: string): CorpusAccount[] {
  return readFileSync(path, 'utf8')
    .split('\n')
    .filter((line) => line.length > 0)
    .map((line) => JSON.parse(line) as CorpusAccount)
}

export function writeManifest(dir: string, manifest: CorpusManifest): void {
  writeFileSync(join(dir, MANIFEST_FILE), JSON.stringify(manifest, null, 2) + '\n')
}

/** The manifest if the corpus in `dir` is complete (every file present with the recorded size), else null. */
export function readCompleteManifest(dir: string): CorpusManifest | null {
  const path = join(dir, MANIFEST_FILE)
  if (!existsSync(path)) return null
  let manifest: CorpusManifest
  try {
    manifest = JSON.parse(readFileSync(path, 'utf8')) as CorpusManifest
  } catch {
    return null
  }
  for (const host of manifest.hosts ?? []) {
    const frames = join(dir, host.framesFile)
    if (!existsSync(frames) || statSync(frames).size !== host.bytes) return null
    if (!existsSync(join(dir, host.accountsFile))) return null
  }
  return manifest
}
