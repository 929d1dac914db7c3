import { execFile } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { describe, expect, it } from 'vitest'
import { parse } from 'yaml'
import { CONFIG_VARIABLES, loadConfig } from '../../src/config.js'

const read = (path: string) => readFileSync(new URL(`../../${path}`, import.meta.url), 'utf8')

describe('deployment files', () => {
  const compose = parse(read('docker-compose.yml')) as {
    services: Record<
      string,
      { environment?: Record<string, string>; depends_on?: Record<string, { condition: string }>; healthcheck?: { test?: string[] }; volumes?: string[] }
    >
    volumes: Record<string, unknown>
  }

  it('docker-compose: the relay waits for a healthy Postgres and uses named volumes', () => {
    expect(compose.services.postgres?.healthcheck).toBeDefined()
    expect(compose.services.relay?.depends_on?.postgres?.condition).toBe('service_healthy')
    for (const service of Object.values(compose.services))
      for (const volume of service.volumes ?? []) expect(Object.keys(compose.volumes)).toContain(volume.split(':')[0])
  })

  it('docker-compose: every relay environment name is a real setting, and the values parse', () => {
    const env = compose.services.relay?.environment ?? {}
    expect(Object.keys(env).length).toBeGreaterThan(0)
    for (const name of Object.keys(env)) expect(CONFIG_VARIABLES, name).toContain(name)
    const literal = Object.fromEntries(Object.entries(env).filter(([, v]) => !String(v).includes('${')))
    expect(() => loadConfig(literal)).not.toThrow()
    expect(loadConfig(literal).databaseUrl).toMatch(/^postgres:\/\/.*@postgres:5432\//)
  })

  it('Dockerfile: multi-stage, non-root, runs the built CLI', () => {
    const dockerfile = read('Dockerfile')
    expect(dockerfile.match(/^FROM /gm)?.length).toBeGreaterThanOrEqual(2)
    expect(dockerfile).toMatch(/^USER (?!root)\w+/m)
    expect(dockerfile).toContain('dist/src/cli.js')
    const pkg = JSON.parse(read('package.json')) as { bin: Record<string, string> }
    expect(dockerfile).toContain(pkg.bin.atrelay!)
    for (const name of dockerfile.match(/\bRELAY_[A-Z_]+/g) ?? []) expect(CONFIG_VARIABLES).toContain(name)
  })

  it('.dockerignore keeps node_modules, data and tests out of the build context, and nothing the Dockerfile copies', () => {
    const ignored = read('.dockerignore')
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l && !l.startsWith('#'))
    for (const big of ['**/node_modules', 'data', 'dist', '.git']) expect(ignored).toContain(big)
    const copied = [...read('Dockerfile').matchAll(/^COPY (?!--from)(.+) \S+$/gm)].flatMap((m) => m[1]!.split(/\s+/))
    expect(copied).toContain('src')
    for (const source of copied) expect(ignored, source).not.toContain(source)
  })

  it('docker-compose: the relay has a healthcheck that needs only node, and it tells healthy from not', async () => {
    const test = compose.services.relay?.healthcheck?.test ?? []
    expect(test.slice(0, 3)).toEqual(['CMD', 'node', '-e'])
    const script = test[3]!
    expect(script).toContain('http://127.0.0.1:2470/xrpc/_health')
    // Run the same script against a stand-in health endpoint: 200, then 503, then nothing listening.
    let status = 200
    const server = createServer((req, res) => {
      res.statusCode = req.url === '/xrpc/_health' ? status : 404
      res.end()
    })
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    const port = (server.address() as AddressInfo).port
    const run = (p: number) =>
      new Promise<number>((resolve) => {
        execFile(process.execPath, ['-e', script.replace(':2470/', `:${p}/`)], (err) => resolve(err ? ((err as { code?: number }).code ?? -1) : 0))
      })
    try {
      expect(await run(port)).toBe(0)
      status = 503
      expect(await run(port)).toBe(1)
    } finally {
      await new Promise<void>((resolve) => server.close(() => resolve()))
    }
    expect(await run(port)).toBe(1)
  })
})
