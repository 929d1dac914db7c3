import { defineConfig } from 'vitest/config'

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    exclude: ['test/peer/**', 'node_modules/**'],
    testTimeout: 30_000,
    // Set-up hooks open PGlite (initdb once per process: tens of seconds on a busy 2-core machine).
    hookTimeout: 180_000,
    // Two cores: run test files in a couple of forks, each with its own database.
    pool: 'forks',
    poolOptions: { forks: { maxForks: 2, minForks: 1 } },
  },
})
