/**
 * The production build laid out as the Dockerfile lays out the image: `npm run build`'s tsc output in
 * dist/ (with src/'s non-TypeScript assets copied beside the compiled files), and migrations/, config/ and
 * content/ beside dist/. Nothing here runs through tsx: `node dist/src/server.js` must find its migrations,
 * plans and templates from there, serve a signup end to end (the worker in-process) and stop cleanly on SIGTERM.
 * (A path computed from the compiled file's location once pointed one level short, and only the image broke.)
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process'
import { cpSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { until } from './jobs/helpers.js'
import { createTestEnv, type TestEnv } from './helpers/test-env.js'

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..')

let env: TestEnv
let app: string
let server: ChildProcess | undefined
let exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>
let out = ''

beforeAll(async () => {
  env = await createTestEnv()
  app = mkdtempSync(join(tmpdir(), 'tenantkit-image-'))
  // The Dockerfile's build stage: tsc, then every non-.ts file of src/ beside its compiled neighbours.
  execFileSync(process.execPath, [join(root, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.build.json', '--outDir', join(app, 'dist')], { cwd: root, stdio: 'pipe' })
  cpSync(join(root, 'src'), join(app, 'dist/src'), { recursive: true, filter: (from) => !from.endsWith('.ts') })
  // The runtime stage: what it copies beside dist/.
  for (const dir of ['migrations', 'config', 'content', 'patches']) cpSync(join(root, dir), join(app, dir), { recursive: true })
  cpSync(join(root, 'package.json'), join(app, 'package.json'))
  symlinkSync(join(root, 'node_modules'), join(app, 'node_modules'))
  server = spawn(process.execPath, ['dist/src/server.js'], {
    cwd: app,
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
}, 120_000)
afterAll(async () => {
  if (server && server.exitCode === null && server.signalCode === null) {
    server.kill('SIGKILL')
    await exited
  }
  if (app) rmSync(app, { recursive: true, force: true })
  await env?.cleanup()
})

it('node dist/src/server.js serves a signup end to end from the image layout, then stops cleanly', async () => {
  const base = await until(async () => /Server listening at (http:\/\/127\.0\.0\.1:\d+)/.exec(out)?.[1], 30_000, `server to listen\n${out}`)
  expect((await fetch(`${base}/health/ready`)).status).toBe(200)
  // Plans come from config/plans.json beside dist/ (seeded by the test world), the OpenAPI document from the routes.
  expect((await fetch(`${base}/docs/json`)).status).toBe(200)

  const signup = await fetch(`${base}/auth/signup`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ email: 'image@example.com', password: 'correct horse battery staple' }),
  })
  expect(signup.status).toBe(201)
  const cookie = signup.headers.getSetCookie().map((c) => c.split(';')[0]).join('; ')
  const status = async () => {
    const me = (await (await fetch(`${base}/me`, { headers: { cookie } })).json()) as { activeTenant: { tenantStatus: string } | null }
    return me.activeTenant?.tenantStatus
  }
  // Provisioning clones the tenant template (migrated from migrations/tenant) in the in-process worker.
  await until(async () => (await status()) === 'active', 30_000, 'tenant to become active')

  server!.kill('SIGTERM')
  expect(await exited).toEqual({ code: 0, signal: null })
  expect(out).not.toMatch(/"level":(50|60)/)
}, 90_000)
