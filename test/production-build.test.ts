/**
 * The production build laid out as the Dockerfile lays out the image: `npm run build`'s tsc output in
 * dist/ (with src/'s non-TypeScript assets copied beside the compiled files), and migrations/, config/ and
 * content/ beside dist/. Nothing here runs through tsx: `node dist/src/server.js` must find its migrations,
 * plans and templates from there, serve a signup end to end (the worker in-process) and stop cleanly on SIGTERM.
 * (A path computed from the compiled file's location once pointed one level short, and only the image broke.)
 */
import { execFileSync } from 'node:child_process'
import { cpSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { type ServerProcess, signUpUntilActive, startServerProcess } from './helpers/server-process.js'
import { createTestEnv, type TestEnv } from './helpers/test-env.js'

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..')

let env: TestEnv
let app: string
let server: ServerProcess | undefined

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
  server = startServerProcess(['dist/src/server.js'], app, env.vars)
}, 120_000)
afterAll(async () => {
  await server?.kill()
  if (app) rmSync(app, { recursive: true, force: true })
  await env?.cleanup()
})

it('node dist/src/server.js serves a signup end to end from the image layout, then stops cleanly', async () => {
  const base = await server!.listening()
  expect((await fetch(`${base}/health/ready`)).status).toBe(200)
  // Plans come from config/plans.json beside dist/ (seeded by the test world), the OpenAPI document from the routes.
  expect((await fetch(`${base}/docs/json`)).status).toBe(200)
  // Provisioning clones the tenant template (migrated from migrations/tenant) in the in-process worker.
  await signUpUntilActive(base, 'image@example.com')
  expect(await server!.stop(), server!.output().slice(-4000)).toEqual({ code: 0, signal: null })
  expect(server!.output()).not.toMatch(/"level":(50|60)/)
}, 90_000)
