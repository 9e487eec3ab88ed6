import { availableParallelism } from 'node:os'
import { defineConfig } from 'vitest/config'

// Test files at once: one per core by default; VITEST_MAX_WORKERS overrides (a shared or busy machine).
// Files are isolated (own host database, Redis key prefix and tenant databases) and wait for state, never for
// a fixed time (test/helpers/wait-for.ts): more files at once only makes each slower. Each file holds some
// Postgres connections, so a many-core machine may need a higher max_connections (or a lower override).
const maxWorkers = Number(process.env.VITEST_MAX_WORKERS) || availableParallelism()

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/global-setup.ts'],
    // Fails a test whose responses broke the documented contract (test/helpers/contract.ts).
    setupFiles: ['test/setup/contract.ts'],
    pool: 'forks',
    maxWorkers,
    // expect.poll() waits for state; its 1 s default is a fixed wait in disguise on a loaded machine.
    expect: { poll: { timeout: 15_000 } },
    testTimeout: 30_000,
    hookTimeout: 60_000,
    teardownTimeout: 30_000,
  },
})
