/**
 * The two tiers of src/plugins/external/rate-limit.ts, with two app instances on one Redis (as behind
 * a balancer): the global flood guard counts per process; login limits (per IP and per email) are
 * shared by every instance through Redis.
 */
import type { FastifyInstance } from 'fastify'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { buildApp } from './helpers/build-app.js'
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
})

const login = (app: FastifyInstance, remoteAddress: string, email: string) =>
  app.inject({ method: 'POST', url: '/auth/login', remoteAddress, payload: { email, password: 'not the password at all' } })

describe('rate limits', () => {
  it('global limit: RATE_LIMIT_MAX per IP per window, counted in each process, not in Redis', async () => {
    const ip = '10.20.0.1'
    const statuses = []
    for (let i = 0; i < 6; i++) statuses.push((await a.inject({ url: '/me', remoteAddress: ip })).statusCode)
    expect(statuses).toEqual([401, 401, 401, 401, 401, 429])
    const limited = await a.inject({ url: '/me', remoteAddress: ip })
    expect(limited.json()).toMatchObject({ statusCode: 429, code: 'RATE_LIMITED' })
    expect(limited.headers['retry-after']).toBeDefined()
    // Another IP, and the same IP on another instance, have their own counts.
    expect((await a.inject({ url: '/me', remoteAddress: '10.20.0.2' })).statusCode).toBe(401)
    const other = await b.inject({ url: '/me', remoteAddress: ip })
    expect(other.statusCode).toBe(401)
    expect(other.headers['x-ratelimit-remaining']).toBe('4')
    expect(await a.redis.keys(`${env.config.redisPrefix}:rl:10.20.*`)).toEqual([])
  })

  it('login per IP (20/min) is shared across instances through Redis', async () => {
    const ip = '10.20.1.1'
    const statuses = []
    for (let i = 0; i < 20; i++) statuses.push((await login(i % 2 ? a : b, ip, `ip-${i}@example.com`)).statusCode)
    expect(statuses.every((s) => s === 401)).toBe(true)
    expect((await login(a, ip, 'ip-20@example.com')).statusCode).toBe(429)
    expect((await login(b, ip, 'ip-21@example.com')).statusCode).toBe(429)
    expect((await a.redis.keys(`${env.config.redisPrefix}:rl:POST/auth/login-${ip}`)).length).toBe(1)
  })

  it('login per email (10 per 10 min) is shared across instances and IPs through Redis', async () => {
    const statuses = []
    for (let i = 0; i < 10; i++) statuses.push((await login(i % 2 ? a : b, `10.20.2.${i}`, 'victim@example.com')).statusCode)
    expect(statuses.every((s) => s === 401)).toBe(true)
    expect((await login(a, '10.20.2.100', 'victim@example.com')).statusCode).toBe(429)
    expect((await login(b, '10.20.2.101', 'Victim@example.com')).statusCode).toBe(429)
  })
})
