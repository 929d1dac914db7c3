import { readFileSync } from 'node:fs'
import { describe, expect, it } from 'vitest'
import { parse } from 'yaml'
import { CONFIG_VARIABLES, loadConfig } from '../../src/config.js'

const read = (path: string) => readFileSync(new URL(`../../${path}`, import.meta.url), 'utf8')

describe('deployment files', () => {
  const compose = parse(read('docker-compose.yml')) as {
    services: Record<string, { environment?: Record<string, string>; depends_on?: Record<string, { condition: string }>; healthcheck?: unknown; volumes?: string[] }>
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
})
