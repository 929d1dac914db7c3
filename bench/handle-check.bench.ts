/**
 * CPU per handle check that fails because the name does not resolve (a lapsed domain, a typo,
 * and every `.test` handle of the bench corpus): what the relay pays per such `#identity`.
 * The relay's own HandleResolver, 50 checks at a time, with lookups that fail in-process.
 *
 *   npx tsx bench/handle-check.bench.ts [checks=3000]
 */
import { HandleResolver } from '../src/identity/handle.js'

const notFound = (name: string) => Object.assign(new Error(`no ${name}`), { code: 'ENOTFOUND' })
const resolver = new HandleResolver({
  allowInsecure: true,
  lookup: async (hostname) => {
    throw notFound(hostname)
  },
  txtLookup: async (name) => {
    throw notFound(name)
  },
})
const N = Number(process.argv[2] ?? 3000)
try {
  for (let round = 0; round < 4; round++) {
    const cpu0 = process.cpuUsage()
    const t0 = performance.now()
    for (let i = 0; i < N; i += 50) {
      const checks = Array.from({ length: 50 }, (_, j) => resolver.resolve(`user${round}x${i + j}.test`))
      for (const r of await Promise.all(checks)) if (r.did !== null) throw new Error('a name resolved')
    }
    const cpu = process.cpuUsage(cpu0)
    const us = (cpu.user + cpu.system) / N
    console.log(`round ${round}${round === 0 ? ' (warm-up)' : ''}: ${us.toFixed(1)} µs of CPU per failed check, ${(((performance.now() - t0) * 1000) / N).toFixed(1)} µs wall`)
  }
} finally {
  await resolver.close()
}
