/**
 * The two tiers of src/core/plugins/external/rate-limit.ts, with two app instances on one Redis (as behind
 * a balancer): the global flood guard counts per process; login failure limits (per IP and per
 * email + IP) are shared by every instance through Redis.
 */
import type { FastifyInstance } from 'fastify'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { LOGIN_FAILURES_PER_EMAIL_IP, LOGIN_FAILURES_PER_IP } from '../src/features/auth/login-throttle.js'
import { hashPassword } from '../src/core/identity/password.js'
import { buildApp } from './helpers/build-app.js'
import { PASSWORD } from './helpers/client.js'
import { createTestEnv, type TestEnv } from './helpers/test-env.js'

let env: TestEnv
let a: FastifyInstance
let b: FastifyInstance

beforeAll(async () => {
  env = await createTestEnv()
  const config = env.configWith({ RATE_LIMIT_MAX: '5', RATE_LIMIT_WINDOW_S: '60' })
  a = await buildApp(config)
  b = await buildApp(config)
})
afterAll(async () => {
  await a?.close()
  await b?.close()
  await env?.cleanup()
}, 180_000)

const login = (app: FastifyInstance, remoteAddress: string, email: string, password = 'not the password at all') =>
  app.inject({ method: 'POST', url: '/auth/login', remoteAddress, payload: { email, password } })

describe('rate limits', () => {
  it('global limit: RATE_LIMIT_MAX per IP per window, counted in each process, not in Redis', async () => {
    const ip = '10.20.0.1'
    const statuses = []
    for (let i = 0; i < 6; i++) statuses.push((await a.inject({ url: '/me', remoteAddress: ip })).statusCode)
    expect(statuses).toEqual([401, 401, 401, 401, 401, 429])
    const limited = await a.inject({ url: '/me', remoteAddress: ip })
    expect(limited.json()).toMatchObject({ statusCode: 429, code: 'RATE_LIMITED' })
    expect(Number(limited.headers['retry-after'])).toBeGreaterThan(0)
    expect(limited.headers).toMatchObject({ 'x-ratelimit-limit': '5', 'x-ratelimit-remaining': '0' })
    // A process' own count is not advertised on answers under the limit (it differs per instance).
    expect(Object.keys((await a.inject({ url: '/me', remoteAddress: '10.20.0.3' })).headers).filter((h) => h.startsWith('x-ratelimit'))).toEqual([])
    // Another IP, and the same IP on another instance, have their own counts.
    expect((await a.inject({ url: '/me', remoteAddress: '10.20.0.2' })).statusCode).toBe(401)
    const other = []
    for (let i = 0; i < 6; i++) other.push((await b.inject({ url: '/me', remoteAddress: ip })).statusCode)
    expect(other).toEqual([401, 401, 401, 401, 401, 429])
    expect(await a.redis.keys(`${env.config.redisPrefix}:rl:10.20.*`)).toEqual([])
  })

  it('login failures per IP (LOGIN_FAILURES_PER_IP) are counted across instances through Redis', async () => {
    const ip = '10.20.1.1'
    const statuses = new Set<number>()
    for (let i = 0; i < LOGIN_FAILURES_PER_IP; i++) statuses.add((await login(i % 2 ? a : b, ip, `ip-${i}@example.com`)).statusCode)
    expect([...statuses]).toEqual([401])
    const refused = await login(a, ip, 'ip-x@example.com')
    expect(refused.json()).toMatchObject({ statusCode: 429, code: 'RATE_LIMITED' })
    expect(refused.headers['retry-after']).toBeDefined()
    expect((await login(b, ip, 'ip-y@example.com')).statusCode).toBe(429)
    expect((await login(b, '10.20.1.2', 'ip-y@example.com')).statusCode).toBe(401)
  })

  it('login failures per email + IP are shared across instances, and never refuse the same email from another IP', async () => {
    await a.users.create({ email: 'victim@example.com', passwordHash: await hashPassword(PASSWORD) })
    const statuses = new Set<number>()
    for (let i = 0; i < LOGIN_FAILURES_PER_EMAIL_IP; i++)
      statuses.add((await login(i % 2 ? a : b, '10.20.2.1', 'victim@example.com')).statusCode)
    expect([...statuses]).toEqual([401])
    expect((await login(a, '10.20.2.1', 'victim@example.com')).statusCode).toBe(429)
    expect((await login(b, '10.20.2.1', 'Victim@example.com', PASSWORD)).statusCode).toBe(429)
    // Before, 10 failures from anywhere locked the address for everyone (issue 10, reproduction 4).
    expect((await login(b, '10.20.2.2', 'victim@example.com')).statusCode).toBe(401)
    expect((await login(a, '10.20.2.3', 'victim@example.com', PASSWORD)).statusCode).toBe(200)
  }, 60_000)
})
