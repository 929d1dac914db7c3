/**
 * Corpus parameters. The manifest stores them; a corpus on disk is reused
 * only when its parameters (and format version) are identical.
 */

export const CORPUS_FORMAT_VERSION = 1

export interface CorpusParams {
  /** Accounts in total, spread round-robin over the hosts. */
  accounts: number
  hosts: number
  /** Mean commits per ordinary account (exponentially distributed, at least 1). */
  commitsPerAccount: number
  /** Accounts that also bulk-create `deepRecords` records (25 per commit), for deep MSTs. */
  deepAccounts: number
  deepRecords: number
  /** Share of accounts with P-256 signing keys (the rest secp256k1). */
  p256Share: number
  /** Seed of the RNG that decides the mix (keys and signatures are random regardless). */
  seed: number
  /** Host i listens on basePort + i; DIDs embed `http://localhost:<port>`. */
  basePort: number
}

export const DEFAULT_PARAMS: CorpusParams = {
  accounts: 2000,
  hosts: 20,
  commitsPerAccount: 20,
  deepAccounts: 4,
  deepRecords: 1200,
  p256Share: 0.1,
  seed: 1,
  basePort: 28100,
}

export const QUICK_PARAMS: CorpusParams = {
  accounts: 200,
  hosts: 4,
  commitsPerAccount: 8,
  deepAccounts: 1,
  deepRecords: 1000,
  p256Share: 0.1,
  seed: 1,
  basePort: 28200,
}

/** Stable identity of a parameter set, stored in the manifest. */
export function paramsKey(params: CorpusParams): string {
  const ordered = Object.fromEntries(Object.entries(params).sort(([a], [b]) => a.localeCompare(b)))
  return JSON.stringify({ v: CORPUS_FORMAT_VERSION, ...ordered })
}

export function validateParams(params: CorpusParams): void {
  const positive: (keyof CorpusParams)[] = ['accounts', 'hosts', 'commitsPerAccount']
  for (const k of positive) if (!(Number.isInteger(params[k]) && params[k] > 0)) throw new Error(`corpus param ${k} must be a positive integer`)
  if (params.hosts > params.accounts) throw new Error('corpus needs at least one account per host')
  if (params.deepAccounts > params.accounts) throw new Error('deepAccounts exceeds accounts')
  if (!(params.p256Share >= 0 && params.p256Share <= 1)) throw new Error('p256Share must be in [0, 1]')
  if (!(params.basePort > 0 && params.basePort + params.hosts <= 65535)) throw new Error('basePort out of range')
}
