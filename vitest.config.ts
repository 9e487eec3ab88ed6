import { defineConfig } from 'vitest/config'

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/global-setup.ts'],
    // Fails a test whose responses broke the documented contract (test/helpers/contract.ts).
    setupFiles: ['test/setup/contract.ts'],
    pool: 'forks',
    // Two cores: two files at a time; each file gets its own host database, key prefix and tenant databases.
    maxWorkers: 2,
    testTimeout: 30_000,
    hookTimeout: 60_000,
    teardownTimeout: 30_000,
  },
})
