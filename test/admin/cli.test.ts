/**
 * `atrelay hosts|domains|accounts|pull-hosts` against running relays: in-process
 * through runAdminCommand (tables and --json), and as real child processes of
 * the CLI for exit codes and one-line error messages.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { runAdminCommand, UsageError } from '../../src/cli/admin-commands.js'
import { AdminClientError } from '../../src/cli/admin-client.js'
import type { Relay } from '../../src/relay.js'
import { spawnRelay } from '../helpers/child.js'
import type { FakePds } from '../helpers/fake-pds.js'
import type { TestAccount } from '../helpers/repo-builder.js'
import { ADMIN_PASSWORD, addHost, apiUrl, hostView, publishGenesis, stopRelay, World } from './harness.js'
import { FirehoseClient } from '../helpers/firehose-client.js'
import { waitFor } from '../helpers/wait.js'
import { startTestRelay } from '../helpers/relay.js'
import { freePort } from '../helpers/ports.js'

let world: World
let relayA: Relay
let relayB: Relay | undefined
let pdsA: FakePds
let pdsB: FakePds
let account: TestAccount
/** Added and then blocked by the `hosts add` test. */
let extra: FakePds

beforeAll(async () => {
  world = await World.start()
  relayA = await startTestRelay(world.relayOptions())
  pdsA = await world.host()
  pdsB = await world.host()
  account = (await world.accounts(pdsA, 1))[0]!
  await addHost(relayA, pdsA)
  await addHost(relayA, pdsB)
  await publishGenesis(pdsA, [account])
  await waitFor('account known', async () => (await hostView(relayA, pdsA.hostname))?.accountCount === 1)
}, 30_000)

afterAll(async () => {
  await stopRelay(relayB)
  await stopRelay(relayA)
  await world?.close()
}, 30_000)

/** Runs a command in-process; returns what it printed. */
async function run(relay: Relay, ...argv: string[]): Promise<string> {
  const out: string[] = []
  await runAdminCommand(argv, { adminUrl: apiUrl(relay), adminPassword: ADMIN_PASSWORD }, { out: (t) => out.push(t) })
  return out.join('\n')
}

/** Runs the real CLI (`node --import tsx src/cli.ts …`) and waits for it to exit. */
async function cli(argv: string[], env: Record<string, string>) {
  const child = spawnRelay(argv, { LOG_LEVEL: 'silent', ...env })
  const { code } = await child.exited
  // spawnRelay parses each stdout line as JSON; --json output is one line.
  return { code, stdout: child.lines, stderr: child.stderr }
}

describe('in-process', () => {
  it('hosts list: a table for people, JSON for scripts', async () => {
    const table = (await run(relayA, 'hosts', 'list')).split('\n')
    expect(table[0]).toMatch(/^HOST\s+STATUS\s+ACCOUNTS\s+EVENTS\/S\s+DROPPED\s+CURSOR\s+LAST ERROR$/)
    const row = table.find((l) => l.startsWith(pdsA.hostname))
    expect(row).toMatch(new RegExp(`^${pdsA.hostname}\\s+active\\s+1/100\\s`))
    expect(table).toHaveLength(3)

    const json = JSON.parse(await run(relayA, 'hosts', 'list', '--json')) as { hostname: string; status: string; accountCount: number }[]
    expect(json.map((h) => h.hostname).sort()).toEqual([pdsA.hostname, pdsB.hostname].sort())
    expect(json.find((h) => h.hostname === pdsA.hostname)).toMatchObject({ status: 'active', accountCount: 1 })
  })

  it('hosts block / list --status / unblock / limit', async () => {
    expect(await run(relayA, 'hosts', 'block', pdsB.hostname)).toBe(`blocked ${pdsB.hostname}`)
    await waitFor('relay disconnected', () => pdsB.openConnections === 0)
    const banned = JSON.parse(await run(relayA, 'hosts', 'list', '--status', 'banned', '--json')) as { hostname: string }[]
    expect(banned.map((h) => h.hostname)).toEqual([pdsB.hostname])
    expect(await run(relayA, 'hosts', 'unblock', pdsB.hostname)).toBe(`unblocked ${pdsB.hostname}`)
    await waitFor('relay reconnected', () => pdsB.openConnections === 1)
    expect(JSON.parse(await run(relayA, 'hosts', 'limit', pdsB.hostname, '250', '--json'))).toEqual({ ok: true, hostname: pdsB.hostname, accountLimit: 250 })
    expect((await hostView(relayA, pdsB.hostname))?.accountLimit).toBe(250)
    await expect(run(relayA, 'hosts', 'limit', pdsB.hostname, 'many')).rejects.toThrow(UsageError)
  })

  it('hosts add: new, then already known', async () => {
    const pds = (extra = await world.host())
    expect(await run(relayA, 'hosts', 'add', pds.hostname)).toBe(`added ${pds.hostname}`)
    await waitFor('relay subscribed', () => pds.openConnections === 1 && relayA.crawler.connection(pds.hostname)?.state === 'open')
    expect(JSON.parse(await run(relayA, 'hosts', 'add', pds.hostname, '--json'))).toEqual({ ok: true, hostname: pds.hostname, outcome: 'connected' })
    expect(await run(relayA, 'hosts', 'add', pds.hostname)).toBe(`${pds.hostname} was already known (connected)`)
    await run(relayA, 'hosts', 'block', pds.hostname)
  })

  it('domains ban / list / unban', async () => {
    expect(await run(relayA, 'domains', 'ban', 'spam.example.com')).toBe('banned spam.example.com')
    const table = (await run(relayA, 'domains', 'list')).split('\n')
    expect(table[0]).toMatch(/^DOMAIN\s+CREATEDAT$/)
    expect(table[1]).toMatch(/^spam\.example\.com\s+\d{4}-\d\d-\d\dT/)
    expect(await run(relayA, 'domains', 'unban', 'spam.example.com')).toBe('unbanned spam.example.com')
    expect(JSON.parse(await run(relayA, 'domains', 'list', '--json'))).toEqual([])
  })

  it('accounts status / takedown / restore, with the #account events on the firehose', async () => {
    const live = new FirehoseClient(relayA)
    await live.opened
    const status = (await run(relayA, 'accounts', 'status', account.did)).split('\n')
    expect(status[0]).toMatch(/^DID\s+HOSTNAME\s+STATUS\s+LOCALSTATUS\s+UPSTREAMSTATUS\s+REV$/)
    expect(status[1]).toMatch(new RegExp(`^${account.did}\\s+${pdsA.hostname}\\s+active\\s+active\\s+active\\s+${account.rev}$`))

    expect(await run(relayA, 'accounts', 'takedown', account.did)).toBe(`took down ${account.did}`)
    await waitFor('#account takendown', () => live.of(account.did, '#account').some((e) => e.body.status === 'takendown'))
    expect(JSON.parse(await run(relayA, 'accounts', 'status', account.did, '--json'))).toMatchObject({ did: account.did, localStatus: 'takendown', active: false })

    expect(await run(relayA, 'accounts', 'restore', account.did)).toBe(`restored ${account.did}`)
    await waitFor('#account active', () => live.of(account.did, '#account').some((e) => e.body.active === true))
    await live.close()
  })

  it('errors are typed: unknown host, unknown DID, missing arguments', async () => {
    await expect(run(relayA, 'hosts', 'block', 'nowhere.example.com')).rejects.toThrow(new AdminClientError('HostNotFound: host not known to this relay: nowhere.example.com'))
    await expect(run(relayA, 'accounts', 'status', 'did:plc:aaaaaaaaaaaaaaaaaaaaaaaa')).rejects.toThrow(/^RepoNotFound: /)
    await expect(run(relayA, 'hosts', 'block')).rejects.toThrow(UsageError)
    await expect(run(relayA, 'hosts', 'explode')).rejects.toThrow(UsageError)
  })
})

describe('child process', () => {
  it('hosts list --json and a block through the real CLI', async () => {
    const env = { RELAY_ADMIN_URL: apiUrl(relayA), RELAY_ADMIN_PASSWORD: ADMIN_PASSWORD }
    const list = await cli(['hosts', 'list', '--json'], env)
    expect(list.code, list.stderr.join('\n')).toBe(0)
    expect(list.stdout).toHaveLength(1)
    const hosts = list.stdout[0] as unknown as { hostname: string; status: string }[]
    expect(hosts.map((h) => `${h.hostname} ${h.status}`).sort()).toEqual([`${pdsA.hostname} active`, `${pdsB.hostname} active`, `${extra.hostname} banned`].sort())

    const block = await cli(['hosts', 'block', pdsB.hostname], env)
    expect(block.code).toBe(0)
    expect(block.stdout).toEqual([{ text: `blocked ${pdsB.hostname}` }])
    expect((await hostView(relayA, pdsB.hostname))?.status).toBe('banned')
    const unblock = await cli(['hosts', 'unblock', pdsB.hostname, '--json'], env)
    expect(unblock.stdout).toEqual([{ ok: true, hostname: pdsB.hostname, action: 'unblock' }])
  }, 60_000)

  it('fails with exit 1 and one clear line: wrong password, unknown host, relay down', async () => {
    const wrong = await cli(['hosts', 'list'], { RELAY_ADMIN_URL: apiUrl(relayA), RELAY_ADMIN_PASSWORD: 'nope' })
    expect(wrong.code).toBe(1)
    expect(wrong.stderr).toEqual(['atrelay: the relay refused the admin password (check RELAY_ADMIN_PASSWORD)'])
    expect(wrong.stdout).toEqual([])

    const unknown = await cli(['hosts', 'block', 'nowhere.example.com'], { RELAY_ADMIN_URL: apiUrl(relayA), RELAY_ADMIN_PASSWORD: ADMIN_PASSWORD })
    expect(unknown.code).toBe(1)
    expect(unknown.stderr).toEqual(['atrelay: HostNotFound: host not known to this relay: nowhere.example.com'])

    const port = await freePort()
    const down = await cli(['domains', 'list'], { RELAY_ADMIN_URL: `http://127.0.0.1:${port}`, RELAY_ADMIN_PASSWORD: ADMIN_PASSWORD })
    expect(down.code).toBe(1)
    expect(down.stderr).toEqual([`atrelay: cannot reach the relay at http://127.0.0.1:${port}: ECONNREFUSED`])
  }, 60_000)
})

describe('pull-hosts', () => {
  it('relay B imports relay A’s hosts (skipping banned ones) and then lists them', async () => {
    const banned = await world.host()
    await addHost(relayA, banned)
    await stopRelayHostBlock(relayA, banned.hostname)

    const db = await (await import('../helpers/db.js')).createPostgresDatabase()
    try {
      relayB = await startTestRelay(world.relayOptions({ databaseUrl: db.url }))
      const env = { RELAY_ADMIN_URL: apiUrl(relayB), RELAY_ADMIN_PASSWORD: ADMIN_PASSWORD }
      const pulled = await cli(['pull-hosts', '--from', apiUrl(relayA), '--json'], env)
      expect(pulled.code, pulled.stderr.join('\n')).toBe(0)
      const result = pulled.stdout[0] as unknown as { added: string[]; known: string[]; skipped: string[]; failed: unknown[] }
      expect(result.added.sort()).toEqual([pdsA.hostname, pdsB.hostname].sort())
      expect(result.known).toEqual([])
      expect(result.skipped.sort()).toEqual([extra.hostname, banned.hostname].sort())
      expect(result.failed).toEqual([])

      const listed = JSON.parse(await run(relayB, 'hosts', 'list', '--json')) as { hostname: string; status: string }[]
      expect(listed.map((h) => h.hostname).sort()).toEqual([pdsA.hostname, pdsB.hostname].sort())
      await waitFor('relay B subscribed to both hosts', () => pdsA.openConnections === 2 && pdsB.openConnections === 2)

      // Human summary, and a second pull adds nothing new (hosts already known are woken, not duplicated).
      const again = await run(relayB, 'pull-hosts', '--from', apiUrl(relayA))
      expect(again).toBe('added 0, already known 2, skipped 2 banned, failed 0')
      expect((JSON.parse(await run(relayB, 'hosts', 'list', '--json')) as unknown[]).length).toBe(2)

      const port = await freePort()
      await expect(run(relayB, 'pull-hosts', '--from', `http://127.0.0.1:${port}`)).rejects.toThrow(`cannot reach http://127.0.0.1:${port}: ECONNREFUSED`)
      await expect(run(relayB, 'pull-hosts')).rejects.toThrow(UsageError)
    } finally {
      await stopRelay(relayB)
      relayB = undefined
      await db.drop()
    }
  }, 60_000)
})

async function stopRelayHostBlock(relay: Relay, hostname: string): Promise<void> {
  await runAdminCommand(['hosts', 'block', hostname], { adminUrl: apiUrl(relay), adminPassword: ADMIN_PASSWORD }, { out: () => undefined })
}

