/**
 * The open-file limit against what the relay holds open, checked once at start-up.
 *
 * Every upstream host is a socket, and so is every firehose, Jetstream and API
 * client and every database connection. Past the limit a dial fails with
 * EMFILE (the host goes offline and is retried) and the API stops accepting
 * clients, so a relay whose limit is below its host count cannot work: it is
 * said at start-up, once, with what to raise. Node raises its own soft limit to
 * the hard one when it starts, so the limit in force is the hard limit the
 * process was started with (systemd LimitNOFILE, docker --ulimit nofile,
 * limits.conf). Read from /proc/self/limits; elsewhere the check is skipped.
 */
import { readFileSync } from 'node:fs'
import type { Logger } from 'pino'

export interface FdLimit {
  soft: number
  hard: number
}

export interface FdNeed {
  /** Hosts the crawler connects at start-up (one socket each). */
  hosts: number
  /** Hosts that may be admitted before the next restart (RELAY_NEW_HOSTS_PER_DAY: a day's worth). */
  newHosts: number
  /** Database connections of both pools. */
  dbConnections: number
}

/** Descriptors beyond hosts and pools: firehose, Jetstream and API clients, listening sockets, workers, files. */
export const FD_RESERVE = 1_024

/** How many descriptors the relay needs for `need`. */
export function fdNeeded(need: FdNeed): number {
  return need.hosts + need.newHosts + need.dbConnections + FD_RESERVE
}

/** The "Max open files" line of a /proc/<pid>/limits text; undefined when absent or unparseable. "unlimited" is Infinity. */
export function parseFdLimit(limitsText: string): FdLimit | undefined {
  const line = limitsText.split('\n').find((l) => l.startsWith('Max open files'))
  const m = line && /^Max open files\s+(\S+)\s+(\S+)/.exec(line)
  if (!m) return undefined
  const value = (s: string) => (s === 'unlimited' ? Number.POSITIVE_INFINITY : Number(s))
  const soft = value(m[1]!)
  const hard = value(m[2]!)
  return Number.isNaN(soft) || Number.isNaN(hard) ? undefined : { soft, hard }
}

/** This process's open-file limit, or undefined where /proc is not there (macOS, BSD). */
export function readFdLimit(): FdLimit | undefined {
  try {
    return parseFdLimit(readFileSync('/proc/self/limits', 'utf8'))
  } catch {
    return undefined
  }
}

export type FdCheck = { result: 'ok' | 'low'; limit: FdLimit; needed: number } | { result: 'unknown'; needed: number }

/** Logs the limit against the need: info when enough, a warning naming the fix when not. */
export function checkFdLimit(need: FdNeed, logger: Logger, readLimit: () => FdLimit | undefined = readFdLimit): FdCheck {
  const needed = fdNeeded(need)
  const limit = readLimit()
  if (limit === undefined) {
    logger.info({ hosts: need.hosts, fdNeeded: needed }, 'open-file limit unknown (no /proc/self/limits): make sure it is above fdNeeded')
    return { result: 'unknown', needed }
  }
  const fields = { fdLimit: limit.soft, fdHardLimit: limit.hard, fdNeeded: needed, hosts: need.hosts, newHostsPerDay: need.newHosts, dbConnections: need.dbConnections }
  if (limit.soft >= needed) {
    logger.info(fields, 'open-file limit')
    return { result: 'ok', limit, needed }
  }
  logger.warn(
    fields,
    `open-file limit ${limit.soft} is below the ${needed} descriptors ${need.hosts} hosts need (one socket each, plus a day of new hosts, ` +
      `the database pools and ${FD_RESERVE} for clients and files): hosts past it fail to connect with EMFILE. ` +
      'Raise it (systemd LimitNOFILE=, docker --ulimit nofile=, ulimit -Hn) and restart',
  )
  return { result: 'low', limit, needed }
}
