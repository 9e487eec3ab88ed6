/**
 * Issue 9 §4: a dependency outage answers 503 SERVICE_UNAVAILABLE with Retry-After within 2 s (never a 500,
 * never a 45 s hang), and the first request after the dependency returns succeeds within 2 s.
 * Each run owns its Postgres cluster and Redis (test/helpers/scratch-services.ts), stops and restarts them.
 * Also: pools configured beyond what max_connections allows refuse to boot with one clear line.
 */
import { spawn } from 'node:child_process'
import { dirname, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { FastifyInstance, LightMyRequestResponse } from 'fastify'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ConfigError } from '../../src/core/config.js'
import { buildApp } from '../helpers/build-app.js'
import { type Client, createClient } from '../helpers/client.js'
import { type ScratchPostgres, type ScratchRedis, startScratchPostgres, startScratchRedis } from '../helpers/scratch-services.js'
import { createTestEnv, type TestEnv } from '../helpers/test-env.js'

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..')
// 20 - 3 reserved = 17 connections for the app role: the test app's pools fit (5 + 5 + 3), the defaults don't.
const MAX_CONNECTIONS = 20

let pg: ScratchPostgres
let redis: ScratchRedis
let env: TestEnv
let app: FastifyInstance
let c: Client

beforeAll(async () => {
  pg = await startScratchPostgres({ maxConnections: MAX_CONNECTIONS })
  // AOF: the session written at signup survives the Redis kill, so "back up" can be a 200 again.
  redis = await startScratchRedis({ appendonly: true })
  env = await createTestEnv(
    // The production bounds (test-env relaxes them for the shared suites). No session cache: a session seen in
    // the last SESSION_CACHE_TTL_MS keeps serving through a Redis blip, and this file is about the Redis read.
    { POOL_CONNECTION_BUDGET: '5', HOST_POOL_MAX: '5', CATALOG_CACHE_TTL_S: '0', REDIS_COMMAND_TIMEOUT_MS: '1000', DB_CONNECT_TIMEOUT_MS: '1500', SESSION_CACHE_TTL_MS: '0' },
    { postgres: pg, redisUrl: redis.url },
  )
  app = await buildApp(env.config)
  c = createClient(app)
  expect((await c.signup('outage@example.com')).statusCode).toBe(201)
}, 120_000)

afterAll(async () => {
  await app?.close()
  pg?.destroy()
  await redis?.destroy()
})

const timed = async (send: () => Promise<LightMyRequestResponse>) => {
  const started = performance.now()
  const res = await send()
  return { res, ms: performance.now() - started }
}

/** Routes that need the host DB, the tenant DB, or both; reads and a write. */
const ROUTES: [string, () => Promise<LightMyRequestResponse>][] = [
  ['GET /api/projects (tenant DB)', () => c.get('/api/projects')],
  ['POST /api/projects (tenant DB write)', () => c.post('/api/projects', { name: 'during outage' })],
  ['GET /me (host DB)', () => c.get('/me')],
  ['GET /billing/plans (host DB)', () => c.get('/billing/plans')],
]

async function expectOutageAnswers(maxMs = 2000) {
  for (const [name, send] of ROUTES) {
    for (let i = 0; i < 3; i++) {
      const { res, ms } = await timed(send)
      expect({ name, status: res.statusCode, code: res.json().code }).toEqual({ name, status: 503, code: 'SERVICE_UNAVAILABLE' })
      expect(res.headers['retry-after']).toBe('5')
      expect(ms, name).toBeLessThan(maxMs)
    }
  }
}

/** Milliseconds until every route answers 2xx again. */
async function msUntilServed(): Promise<number> {
  const started = performance.now()
  for (const [name, send] of ROUTES) {
    await expect
      .poll(
        async () => {
          const res = await send()
          return res.statusCode < 300 ? 'ok' : `${name}: ${res.statusCode} ${res.body}`
        },
        { timeout: 10_000, interval: 20 },
      )
      .toBe('ok')
  }
  return performance.now() - started
}

describe('Postgres outage', () => {
  it('stopped (fast): tenant and host routes answer 503 with Retry-After within 2 s; back: 2xx within 2 s', async () => {
    expect(await msUntilServed()).toBeLessThan(2000)
    pg.stop('fast')
    try {
      await expectOutageAnswers()
    } finally {
      pg.start()
    }
    expect(await msUntilServed()).toBeLessThan(2000)
  }, 60_000)

  it('crashed (immediate, recovery on start): the same', async () => {
    pg.stop('immediate')
    try {
      await expectOutageAnswers()
    } finally {
      pg.start()
    }
    expect(await msUntilServed()).toBeLessThan(2000)
  }, 60_000)
})

describe('Redis outage', () => {
  it('killed: session routes answer 503 at once (not after the command timeout, nor a 500 after 15 s); back: 2xx within 2 s', async () => {
    expect(await msUntilServed()).toBeLessThan(2000)
    await redis.kill()
    try {
      // Once the client has seen its connection drop, a command fails at once rather than waiting
      // REDIS_COMMAND_TIMEOUT_MS in the offline queue (each answer took ~1 s, two Redis steps 2 s).
      await expect.poll(() => app.redis.status).not.toBe('ready')
      // Every route: sessions and rate limits live in Redis.
      await expectOutageAnswers(500)
    } finally {
      await redis.start()
    }
    expect(await msUntilServed()).toBeLessThan(2000)
  }, 60_000)
})

describe('pools that cannot fit max_connections', () => {
  it('the app refuses to boot, naming the variables and the limit', async () => {
    const err = await buildApp(env.configWith({ POOL_CONNECTION_BUDGET: '60', HOST_POOL_MAX: '10' })).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(ConfigError)
    expect((err as Error).message).toBe(
      `POOL_CONNECTION_BUDGET: HOST_POOL_MAX 10 + POOL_CONNECTION_BUDGET 60 + 3 provisioning = 73 connections per process, but Postgres at 127.0.0.1:${pg.port} allows 17 (max_connections 20 - 3 reserved); lower POOL_CONNECTION_BUDGET/HOST_POOL_MAX or raise max_connections`,
    )
  })

  it('the server process prints one line and exits 1', async () => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/server.ts'], {
      cwd: root,
      env: { ...process.env, ...env.vars, POOL_CONNECTION_BUDGET: '60', HOST: '127.0.0.1', PORT: '0', LOG_LEVEL: 'silent' },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let out = ''
    child.stdout.on('data', (d) => (out += d))
    child.stderr.on('data', (d) => (out += d))
    const code = await new Promise<number | null>((r) => child.once('exit', (code) => r(code)))
    expect(code).toBe(1)
    expect(out.trim().split('\n')).toEqual([expect.stringMatching(/^Invalid configuration: POOL_CONNECTION_BUDGET: .* = 68 connections per process, but Postgres at 127\.0\.0\.1:\d+ allows 17 /)])
  }, 120_000) // a cold tsx start alone takes 20-60 s on a loaded machine
})
