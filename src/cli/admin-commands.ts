/**
 * `atrelay hosts|domains|accounts|pull-hosts …`: operator commands against a
 * running relay's admin API. Tables for people, `--json` for scripts.
 */
import { parseArgs } from 'node:util'
import type { AdminAccount, AdminHost } from '../api/admin/controls.js'
import { AdminClient, AdminClientError, listRemoteHosts } from './admin-client.js'

export const ADMIN_USAGE = `Admin commands (talk to a running relay: RELAY_ADMIN_URL, RELAY_ADMIN_PASSWORD):
  atrelay hosts list [--status S]           hosts with status, accounts, events and drops
  atrelay hosts add <hostname>              admit a host (bypasses the daily limit)
  atrelay hosts block|unblock <hostname>
  atrelay hosts limit <hostname> <n>        set a host's account limit
  atrelay domains list | ban <domain> | unban <domain>
  atrelay accounts status|takedown|restore <did>
  atrelay pull-hosts --from <relay url>     import another relay's hosts (listHosts)
  Add --json for machine-readable output.`

type AddHostResult = { ok: true; hostname: string; outcome: 'added' | 'reconnecting' | 'connected' }

export class UsageError extends Error {
  override readonly name = 'UsageError'
}

export function table(rows: Record<string, unknown>[], columns: string[]): string {
  const cells = rows.map((r) => columns.map((c) => String(r[c] ?? '')))
  const widths = columns.map((c, i) => Math.max(c.length, ...cells.map((row) => row[i]!.length)))
  const line = (values: string[]) => values.map((v, i) => v.padEnd(widths[i]!)).join('  ').trimEnd()
  return [line(columns.map((c) => c.toUpperCase())), ...cells.map(line)].join('\n')
}

/** The options an admin command may take, anywhere on the line; the rest are positional. */
const OPTIONS = { json: { type: 'boolean' }, status: { type: 'string' }, from: { type: 'string' } } as const

interface AdminArgs {
  positionals: string[]
  json: boolean
  status: string | undefined
  from: string | undefined
}

/**
 * node:util parseArgs for the known options. A negative number stays a
 * positional (`hosts limit h -1` gets the limit's own message); any other
 * unknown option is a usage error rather than a hostname.
 */
export function parseAdminArgs(argv: string[]): AdminArgs {
  const { values, tokens } = parseArgs({ args: argv, options: OPTIONS, allowPositionals: true, strict: false, tokens: true })
  const positionals: string[] = []
  let negativeAt = -1
  for (const token of tokens) {
    if (token.kind === 'positional') positionals.push(token.value)
    else if (token.kind === 'option' && !(token.name in OPTIONS)) {
      const raw = argv[token.index]!
      if (!/^-\d/.test(raw)) throw new UsageError(`unknown option ${raw}\n\n${ADMIN_USAGE}`)
      // `-12` comes back as one token per digit, all with the same index.
      if (token.index !== negativeAt) positionals.push(raw)
      negativeAt = token.index
    }
  }
  const text = (v: unknown) => (typeof v === 'string' ? v : undefined)
  return { positionals, json: values.json === true, status: text(values.status), from: text(values.from) }
}

interface Io {
  out: (text: string) => void
}

export async function runAdminCommand(
  argv: string[],
  env: { adminUrl: string; adminPassword: string | undefined },
  io: Io = { out: (t) => console.log(t) },
): Promise<void> {
  const { positionals: args, json, status, from } = parseAdminArgs(argv)
  const [group, action, ...rest] = args
  const need = (n: number, what: string) => {
    if (rest.length < n) throw new UsageError(`missing ${what}\n\n${ADMIN_USAGE}`)
    return rest
  }
  const client = () => new AdminClient(env.adminUrl, env.adminPassword)
  // --json: one line of JSON per command, easy to pipe into jq or read line by line.
  const print = (data: unknown, human: () => string) => io.out(json ? JSON.stringify(data) : human())

  if (group === 'hosts') {
    if (action === 'list') {
      const { hosts } = await client().get<{ hosts: AdminHost[] }>('hosts')
      const shown = status ? hosts.filter((h) => h.status === status) : hosts
      return print(shown, () =>
        table(
          shown.map((h) => ({
            host: h.hostname,
            status: h.rateLimited ? `${h.status}, rate-limited` : h.status,
            accounts: `${h.accountCount}/${h.accountLimit}`,
            'events/s': h.eventsPerSecond.toFixed(1),
            dropped: Object.values(h.events.dropped).reduce((a, b) => a + b, 0),
            cursor: h.cursor,
            'last error': h.lastError?.message ?? '',
          })),
          ['host', 'status', 'accounts', 'events/s', 'dropped', 'cursor', 'last error'],
        ),
      )
    }
    if (action === 'add') {
      const [hostname] = need(1, 'hostname')
      const added = await client().post<AddHostResult>('hosts', { hostname })
      return print(added, () => (added.outcome === 'added' ? `added ${added.hostname}` : `${added.hostname} was already known (${added.outcome})`))
    }
    if (action === 'block' || action === 'unblock') {
      const [hostname] = need(1, 'hostname')
      await client().post(`hosts/${action}`, { hostname })
      return print({ ok: true, hostname, action }, () => `${action}ed ${hostname}`)
    }
    if (action === 'limit') {
      const [hostname, n] = need(2, 'hostname and limit')
      const accountLimit = Number(n)
      if (!Number.isSafeInteger(accountLimit) || accountLimit < 0) throw new UsageError(`limit must be a non-negative integer, got "${n}"`)
      await client().post('hosts/limit', { hostname, accountLimit })
      return print({ ok: true, hostname, accountLimit }, () => `${hostname}: account limit ${accountLimit}`)
    }
  }
  if (group === 'domains') {
    if (action === 'list') {
      const { domains } = await client().get<{ domains: { domain: string; createdAt: string }[] }>('domains')
      return print(domains, () => table(domains, ['domain', 'createdAt']))
    }
    if (action === 'ban' || action === 'unban') {
      const [domain] = need(1, 'domain')
      await client().post(`domains/${action}`, { domain })
      return print({ ok: true, domain, action }, () => `${action}ned ${domain}`)
    }
  }
  if (group === 'accounts') {
    const [did] = need(1, 'DID')
    if (action === 'status') {
      const a = await client().get<AdminAccount>(`accounts?did=${encodeURIComponent(did!)}`)
      return print(a, () => table([{ ...a, status: a.active ? 'active' : a.status }], ['did', 'hostname', 'status', 'localStatus', 'upstreamStatus', 'rev']))
    }
    if (action === 'takedown' || action === 'restore') {
      await client().post(`accounts/${action}`, { did })
      return print({ ok: true, did, action }, () => `${action === 'takedown' ? 'took down' : 'restored'} ${did}`)
    }
  }
  if (group === 'pull-hosts') {
    if (!from) throw new UsageError(`pull-hosts needs --from <relay url>\n\n${ADMIN_USAGE}`)
    const c = client()
    const result = { added: [] as string[], known: [] as string[], failed: [] as { hostname: string; error: string }[], skipped: [] as string[] }
    for await (const host of listRemoteHosts(from)) {
      if (host.status === 'banned') {
        result.skipped.push(host.hostname)
        continue
      }
      try {
        const added = await c.post<AddHostResult>('hosts', { hostname: host.hostname })
        ;(added.outcome === 'added' ? result.added : result.known).push(added.hostname)
      } catch (err) {
        if (!(err instanceof AdminClientError)) throw err
        result.failed.push({ hostname: host.hostname, error: err.message })
      }
    }
    return print(result, () =>
      [
        `added ${result.added.length}, already known ${result.known.length}, skipped ${result.skipped.length} banned, failed ${result.failed.length}`,
        ...result.failed.map((f) => `  ${f.hostname}: ${f.error}`),
      ].join('\n'),
    )
  }
  throw new UsageError(`unknown command: ${args.join(' ')}\n\n${ADMIN_USAGE}`)
}
