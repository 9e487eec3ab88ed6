/**
 * Issue 9 §7: a Redis outage is reported through the JSON log, rate-limited per client, never as raw
 * "[ioredis] Unhandled error event" or multi-line ECONNREFUSED stacks (the catalog subscriber, the BullMQ
 * queues and workers had no `error` listener). The API process runs with its job workers in-process
 * against a Redis of its own, which this test kills and restarts.
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { dirname, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { type ScratchRedis, startScratchRedis } from '../helpers/scratch-services.js'
import { createTestEnv, type TestEnv } from '../helpers/test-env.js'

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..')

let env: TestEnv
let redis: ScratchRedis
let server: ChildProcess | undefined
let exited: Promise<number | null>
let out = ''

beforeAll(async () => {
  redis = await startScratchRedis()
  env = await createTestEnv()
  server = spawn(process.execPath, ['--import', 'tsx', 'src/server.ts'], {
    cwd: root,
    env: { ...process.env, ...env.vars, REDIS_URL: redis.url, WORKER_IN_PROCESS: 'true', HOST: '127.0.0.1', PORT: '0', LOG_LEVEL: 'info' },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  server.stdout!.on('data', (d) => (out += d))
  server.stderr!.on('data', (d) => (out += d))
  exited = new Promise((r) => server!.once('exit', (code) => r(code)))
}, 60_000)

afterAll(async () => {
  // Only the child this file started, by its own handle.
  if (server && server.exitCode === null && server.signalCode === null) {
    server.kill('SIGKILL')
    await exited
  }
  await redis?.destroy()
  await env?.cleanup()
})

const lines = () => out.split('\n').filter((l) => l.trim() !== '')
const failing = (client: string) => lines().filter((l) => l.includes(`"client":"${client}"`) && l.includes('failing'))

it('a Redis outage is logged as rate-limited JSON lines per client, with nothing raw on stdout/stderr', async () => {
  await expect.poll(() => /Server listening at/.test(out), { timeout: 45_000, interval: 100 }).toBe(true)
  expect(out).toContain('job workers running in-process')
  const before = lines().length

  await redis.kill()
  // The clients that printed raw errors before: the app's, the invalidation subscriber (one per process: catalog, memberships, API keys, revocations), the queues and workers.
  for (const client of ['app', 'invalidation subscriber', 'queue system', 'worker system']) {
    await expect.poll(() => failing(client).length, { timeout: 15_000, interval: 100 }).toBeGreaterThan(0)
  }
  await redis.start()
  const back = () => lines().find((l) => l.includes('"client":"app"') && l.includes('connected again'))
  await expect.poll(back, { timeout: 15_000, interval: 100 }).toBeTruthy()
  // Every reconnect attempt failed with an error event, yet each client wrote one line (10 s interval);
  // the rest were counted and reported when it came back.
  expect(JSON.parse(back()!).suppressed).toBeGreaterThan(0)
  for (const client of ['app', 'invalidation subscriber', 'queue system', 'worker system']) expect(failing(client).length, client).toBe(1)

  const outage = lines().slice(before)
  expect(out).not.toContain('[ioredis] Unhandled error event')
  expect(outage.filter((l) => /^\s*Error: /.test(l) || /^\s+at /.test(l))).toEqual([])
  // Every line is a pino JSON record.
  expect(
    outage.filter((l) => {
      try {
        return typeof JSON.parse(l).level !== 'number'
      } catch {
        return true
      }
    }),
  ).toEqual([])
}, 120_000)
