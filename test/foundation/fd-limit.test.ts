import { describe, expect, it } from 'vitest'
import { checkFdLimit, FD_RESERVE, fdNeeded, parseFdLimit, readFdLimit } from '../../src/fd-limit.js'
import { memoryLogger } from '../helpers/memory-logger.js'

const LIMITS = `Limit                     Soft Limit           Hard Limit           Units
Max cpu time              unlimited            unlimited            seconds
Max open files            1024                 4096                 files
Max locked memory         8388608              8388608              bytes
`

describe('open-file limit at start-up', () => {
  it('reads the soft and hard limit from /proc/<pid>/limits', () => {
    expect(parseFdLimit(LIMITS)).toEqual({ soft: 1024, hard: 4096 })
    expect(parseFdLimit(LIMITS.replace('1024                 4096', 'unlimited            unlimited'))).toEqual({ soft: Infinity, hard: Infinity })
    expect(parseFdLimit('Max cpu time unlimited unlimited seconds\n')).toBeUndefined()
    expect(parseFdLimit('Max open files  lots  many  files\n')).toBeUndefined()
  })

  it('reads this process limit on Linux', () => {
    const limit = readFdLimit()
    if (process.platform !== 'linux') return expect(limit).toBeUndefined()
    expect(limit!.soft).toBeGreaterThan(0)
    expect(limit!.hard).toBeGreaterThanOrEqual(limit!.soft)
  })

  it('needs a socket per host and a day of new hosts, the pools and a reserve', () => {
    expect(fdNeeded({ hosts: 3_000, newHosts: 50, dbConnections: 30 })).toBe(3_080 + FD_RESERVE)
  })

  it('warns, naming the fix, when 3,000 hosts meet a limit of 1,024', () => {
    const { logger, log } = memoryLogger('info')
    const check = checkFdLimit({ hosts: 3_000, newHosts: 50, dbConnections: 30 }, logger, () => ({ soft: 1_024, hard: 1_024 }))
    expect(check).toMatchObject({ result: 'low', needed: 3_080 + FD_RESERVE })
    const line = JSON.parse(log.lines.at(-1)!)
    expect(line.level).toBe(40)
    expect(line).toMatchObject({ fdLimit: 1_024, fdNeeded: 3_080 + FD_RESERVE, hosts: 3_000 })
    expect(line.msg).toMatch(/below the 4104 descriptors 3000 hosts need/)
    expect(line.msg).toMatch(/LimitNOFILE/)
  })

  it('logs the limit at info when it is enough, and says so when it cannot be read', () => {
    const { logger, log } = memoryLogger('info')
    expect(checkFdLimit({ hosts: 3_000, newHosts: 50, dbConnections: 30 }, logger, () => ({ soft: 65_536, hard: 65_536 })).result).toBe('ok')
    expect(JSON.parse(log.lines.at(-1)!)).toMatchObject({ level: 30, fdLimit: 65_536, msg: 'open-file limit' })
    expect(checkFdLimit({ hosts: 10, newHosts: 0, dbConnections: 4 }, logger, () => undefined).result).toBe('unknown')
    expect(JSON.parse(log.lines.at(-1)!).msg).toMatch(/unknown/)
  })
})
