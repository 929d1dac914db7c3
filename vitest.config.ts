import { defineConfig } from 'vitest/config'

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    exclude: ['test/peer/**', 'node_modules/**'],
    // Generous: a busy 2-core machine makes PGlite start-ups and child processes slow; tests wait on
    // conditions with their own deadlines, so this only bounds a test that is stuck (never a timing assertion).
    testTimeout: 120_000,
    // Set-up hooks open PGlite (initdb once per process: tens of seconds on a busy 2-core machine).
    hookTimeout: 180_000,
    // Two cores: run test files in a couple of forks, each with its own database.
    pool: 'forks',
    poolOptions: { forks: { maxForks: 2, minForks: 1 } },
  },
})
