/** The admin CLI's argument parsing (node:util parseArgs), without a relay. */
import { describe, expect, it } from 'vitest'
import { parseAdminArgs, runAdminCommand, UsageError } from '../../src/cli/admin-commands.js'

const offline = { adminUrl: 'http://127.0.0.1:9', adminPassword: 'unused' }

describe('admin command arguments', () => {
  it('takes --json, --status and --from anywhere, also as --name=value', () => {
    expect(parseAdminArgs(['--json', 'hosts', 'list', '--status', 'banned'])).toEqual({ positionals: ['hosts', 'list'], json: true, status: 'banned', from: undefined })
    expect(parseAdminArgs(['hosts', 'list', '--status=idle'])).toMatchObject({ positionals: ['hosts', 'list'], json: false, status: 'idle' })
    expect(parseAdminArgs(['pull-hosts', '--from', 'http://relay.test', '--json'])).toMatchObject({ positionals: ['pull-hosts'], json: true, from: 'http://relay.test' })
  })

  it('keeps a negative number as a positional, so the limit check words the error', async () => {
    expect(parseAdminArgs(['hosts', 'limit', 'pds.test', '-12']).positionals).toEqual(['hosts', 'limit', 'pds.test', '-12'])
    await expect(runAdminCommand(['hosts', 'limit', 'pds.test', '-12'], offline)).rejects.toThrow(new UsageError('limit must be a non-negative integer, got "-12"'))
  })

  it('refuses an unknown option as a usage error instead of taking it for a name', async () => {
    expect(() => parseAdminArgs(['hosts', 'add', '--force'])).toThrow(UsageError)
    await expect(runAdminCommand(['hosts', 'block', '--force'], offline)).rejects.toThrow(/^unknown option --force/)
  })

  it('pull-hosts without a --from value is a usage error', async () => {
    await expect(runAdminCommand(['pull-hosts', '--from'], offline)).rejects.toThrow(/^pull-hosts needs --from <relay url>/)
  })
})
