/**
 * The HTTP entry point as `npm run dev` runs it (`src/server.ts`, NODE_ENV=development, queue mode, no
 * WORKER_IN_PROCESS given): the job workers start inside the API process, so a signup's tenant becomes
 * active with no second command; SIGTERM closes workers and app and exits 0.
 */
import { dirname, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { type ServerProcess, signUpUntilActive, startServerProcess } from './helpers/server-process.js'
import { createTestEnv, type TestEnv } from './helpers/test-env.js'

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..')

let env: TestEnv
let server: ServerProcess | undefined

beforeAll(async () => {
  env = await createTestEnv()
  server = startServerProcess(['--import', 'tsx', 'src/server.ts'], root, env.vars)
})
afterAll(async () => {
  // Only the child this file started, by its own handle.
  await server?.kill()
  await env?.cleanup()
})

it('runs the job workers in-process: signup → provisioning → active, then a clean SIGTERM', async () => {
  const base = await server!.listening()
  expect(server!.output()).toContain('job workers running in-process')
  await signUpUntilActive(base, 'dev@example.com')
  expect(await server!.stop()).toEqual({ code: 0, signal: null })
  expect(server!.output()).not.toMatch(/"level":(50|60)/) // no error or fatal log on the way down
})
