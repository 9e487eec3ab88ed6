/**
 * The HTTP entry point as `npm run dev` runs it (`src/server.ts`, NODE_ENV=development, queue mode, no
 * WORKER_IN_PROCESS given): the job workers start inside the API process, so a signup's tenant becomes
 * active with no second command; SIGTERM closes workers and app and exits 0.
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { dirname, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { until } from './jobs/helpers.js'
import { createTestEnv, type TestEnv } from './helpers/test-env.js'

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..')

let env: TestEnv
let server: ChildProcess | undefined
let exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>
let out = ''

beforeAll(async () => {
  env = await createTestEnv()
  server = spawn(process.execPath, ['--import', 'tsx', 'src/server.ts'], {
    cwd: root,
    env: { ...process.env, ...env.vars, NODE_ENV: 'development', PROVISION_INLINE: 'false', HOST: '127.0.0.1', PORT: '0', LOG_LEVEL: 'info' },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  server.stdout!.on('data', (d) => {
    out += d
  })
  server.stderr!.on('data', (d) => {
    out += d
  })
  exited = new Promise((r) => server!.once('exit', (code, signal) => r({ code, signal })))
})
afterAll(async () => {
  // Only the child this file started, by its own handle.
  if (server && server.exitCode === null && server.signalCode === null) {
    server.kill('SIGKILL')
    await exited
  }
  await env?.cleanup()
})

it('runs the job workers in-process: signup → provisioning → active, then a clean SIGTERM', async () => {
  const base = await until(async () => /Server listening at (http:\/\/127\.0\.0\.1:\d+)/.exec(out)?.[1], 30_000, `server to listen\n${out}`)
  expect(out).toContain('job workers running in-process')

  const signup = await fetch(`${base}/auth/signup`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ email: 'dev@example.com', password: 'correct horse battery staple' }),
  })
  expect(signup.status).toBe(201)
  const { tenant } = (await signup.json()) as { tenant: { id: string; status: string } }
  expect(tenant.status).toBe('provisioning')
  const cookie = signup.headers.getSetCookie().map((c) => c.split(';')[0]).join('; ')

  const status = async () => {
    const me = (await (await fetch(`${base}/me`, { headers: { cookie } })).json()) as { activeTenant: { tenantStatus: string } | null }
    return me.activeTenant?.tenantStatus
  }
  await until(async () => (await status()) === 'active', 30_000, 'tenant to become active')

  server!.kill('SIGTERM')
  expect(await exited).toEqual({ code: 0, signal: null })
  expect(out).not.toMatch(/"level":(50|60)/) // no error or fatal log on the way down
})
