/**
 * `npm run bench:network` parameters and the network's shape: host sizes
 * (power law), active accounts per host, cache sizes in the real network's
 * proportion, and the DIDs of seeded accounts (the same formula in SQL and here).
 */
import { createHash } from 'node:crypto'
import { parseArgs } from 'node:util'

export interface NetworkParams {
  hosts: number
  /** Accounts known to the relay before the run (seeded rows, heads, identities). */
  accounts: number
  /** Accounts the hosts create and keep active during the run (Zipf activity). */
  active: number
  zipf: number
  /** Most events one account makes per second (default 2, as a PDS's write limit; 0: uncapped, Zipf alone). */
  accountRateCap: number
  soakMin: number
  highMin: number
  /** Length of the max-rate probe. */
  maxRateS: number
  /** Relay down this long in the catch-up test. */
  downS: number
  warmS: number
  /** First host port; host i listens on basePort + i. */
  basePort: number
  /** Hosts per host process. */
  hostsPerChild: number
  partitionSize: number
  replayWindow: string
  /** Small-corpus comparison run (same harness, same offered rate). */
  small: { hosts: number; accounts: number; active: number; seconds: number }
  label: string
}

export const FULL: NetworkParams = {
  hosts: 3000,
  accounts: 10_000_000,
  active: 100_000,
  zipf: 1,
  accountRateCap: 2,
  soakMin: 30,
  highMin: 5,
  maxRateS: 60,
  downS: 300,
  warmS: 60,
  basePort: 30000,
  hostsPerChild: 1000,
  partitionSize: 250_000,
  replayWindow: '15m',
  small: { hosts: 20, accounts: 2000, active: 2000, seconds: 120 },
  label: 'full',
}

export const SMOKE: NetworkParams = {
  ...FULL,
  hosts: 100,
  accounts: 200_000,
  active: 5000,
  soakMin: 1,
  highMin: 20 / 60,
  maxRateS: 20,
  downS: 20,
  warmS: 15,
  hostsPerChild: 50,
  partitionSize: 5000,
  replayWindow: '1m',
  small: { hosts: 20, accounts: 2000, active: 2000, seconds: 30 },
  label: 'smoke',
}

export function parseNetworkArgs(argv: string[]): NetworkParams & { render?: string } {
  const { values } = parseArgs({
    args: argv,
    options: {
      smoke: { type: 'boolean', default: false },
      hosts: { type: 'string' },
      accounts: { type: 'string' },
      active: { type: 'string' },
      'soak-min': { type: 'string' },
      'high-min': { type: 'string' },
      'max-rate-s': { type: 'string' },
      'down-s': { type: 'string' },
      'account-rate-cap': { type: 'string' },
      'partition-size': { type: 'string' },
      'replay-window': { type: 'string' },
      label: { type: 'string' },
      render: { type: 'string' },
    },
  })
  const p: NetworkParams = { ...(values.smoke ? SMOKE : FULL) }
  const num = (v: string | undefined, d: number) => (v === undefined ? d : Number(v))
  p.hosts = num(values.hosts, p.hosts)
  p.accounts = num(values.accounts, p.accounts)
  p.active = num(values.active, p.active)
  p.soakMin = num(values['soak-min'], p.soakMin)
  p.highMin = num(values['high-min'], p.highMin)
  p.maxRateS = num(values['max-rate-s'], p.maxRateS)
  p.downS = num(values['down-s'], p.downS)
  p.accountRateCap = num(values['account-rate-cap'], p.accountRateCap)
  p.partitionSize = num(values['partition-size'], p.partitionSize)
  p.replayWindow = values['replay-window'] ?? p.replayWindow
  p.hostsPerChild = Math.max(10, Math.min(1000, Math.ceil(p.hosts / 3)))
  p.label = values.label ?? (values.smoke ? 'smoke' : p.hosts === FULL.hosts && p.accounts === FULL.accounts ? 'full' : 'custom')
  if (p.hosts > p.accounts) throw new Error('--hosts exceeds --accounts')
  return values.render ? { ...p, render: values.render } : p
}

/**
 * Host sizes, the shape of the real network: the first quarter of the hosts hold nearly every account with
 * power-law sizes s_i = ⌊C / (i+1)^1.1⌋ (C chosen so the total is `accounts`, the remainder on host 0);
 * the other three quarters are tiny self-hosted PDSes with 1–10 accounts each. With 3,000 hosts and
 * 10 M accounts: 1.85 M, 0.86 M, 0.55 M, 0.40 M, … (three over 500k), the 750th ~1.3k, then 2,250 hosts with 1–10.
 */
export function hostSizes(hosts: number, accounts: number): number[] {
  const head = Math.max(1, Math.ceil(hosts / 4))
  const tail = Array.from({ length: hosts - head }, (_, k) => 1 + (k % 10))
  const rest = accounts - tail.reduce((a, b) => a + b, 0)
  if (rest < head) throw new Error(`${accounts} accounts are too few for ${hosts} hosts`)
  const sizes = (c: number) => Array.from({ length: head }, (_, i) => Math.max(11, Math.floor(c / (i + 1) ** 1.1)))
  const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0)
  let lo = 0
  let hi = rest
  while (hi - lo > 1) {
    const mid = Math.floor((lo + hi) / 2)
    if (sum(sizes(mid)) <= rest) lo = mid
    else hi = mid
  }
  const out = sizes(lo)
  out[0]! += rest - sum(out)
  return [...out, ...tail]
}

/** Active accounts per host: in proportion to its size, at least one per host. */
export function activePerHost(sizes: number[], active: number): number[] {
  const total = sizes.reduce((a, b) => a + b, 0)
  return sizes.map((s) => Math.max(1, Math.round((active * s) / total)))
}

/**
 * Cache sizes in the proportion of the defaults to the real network: RELAY_IDENTITY_CACHE_SIZE 250,000 and
 * RELAY_ACCOUNT_CACHE_SIZE 100,000 against ~3 M daily-active accounts of ~40 M: 1/12 and 1/30 of the active set.
 */
export const REAL_DAILY_ACTIVE = 3_000_000
export function identityCacheFor(active: number): number {
  return Math.max(100, Math.round((active * 250_000) / REAL_DAILY_ACTIVE))
}
export function accountCacheFor(active: number): number {
  return Math.max(100, Math.round((active * 100_000) / REAL_DAILY_ACTIVE))
}

/** The DID of seeded account g (1-based): did:plc: + 24 chars of md5(g) with 0,1,8,9 → w,x,y,z (base32 alphabet). */
export function seededDid(g: number): string {
  const hex = createHash('md5').update(String(g)).digest('hex').slice(0, 24)
  return 'did:plc:' + hex.replace(/[0189]/g, (c) => ({ '0': 'w', '1': 'x', '8': 'y', '9': 'z' })[c]!)
}
export const SEEDED_DID_SQL = `'did:plc:' || translate(substr(md5(g::text), 1, 24), '0189', 'wxyz')`
