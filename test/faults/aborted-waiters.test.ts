/**
 * Issue 9 §1: a request the client gives up on never keeps connection budget. With a budget of 2 and one
 * connection per tenant, 1,000 real HTTP requests to many tenants wait for budget and are aborted by the
 * client; afterwards the whole budget is free and every tenant is served. Also: clients that give up at
 * random moments (while waiting, while the handler runs), and readiness while waiters keep timing out.
 */
import { setMaxListeners } from 'node:events'
import { request as httpRequest } from 'node:http'
import { beforeAll, describe, expect, it } from 'vitest'
import type { TenantRecord } from '../../src/core/tenancy/types.js'
import { buildApp } from '../helpers/build-app.js'
import { createClient } from '../helpers/client.js'
import { useApp } from '../helpers/use-app.js'

const TENANTS = 12
let base: string
let cookie: string
let tenants: TenantRecord[]

const ctx = useApp({
  POOL_CONNECTION_BUDGET: '2',
  POOL_MAX_PER_TENANT: '1',
  // Waiters must still be waiting when their clients give up.
  POOL_ACQUIRE_TIMEOUT_MS: '60000',
  RATE_LIMIT_MAX: '1000000',
})
beforeAll(async () => {
  const app = ctx.app
  await app.listen({ host: '127.0.0.1', port: 0 })
  const { port } = app.server.address() as { port: number }
  base = `http://127.0.0.1:${port}`
  const c = createClient(app)
  const signup = await c.signup('waiter@example.com')
  expect(signup.statusCode).toBe(201)
  cookie = Object.entries(c.cookies)
    .map(([k, v]) => `${k}=${v}`)
    .join('; ')
  const ownerUserId = signup.json().user.id as string
  tenants = []
  for (let i = 0; i < TENANTS; i++) {
    const t = await app.tenancy.createTenant({ slug: `aborted-${i}`, name: `Aborted ${i}`, ownerUserId })
    tenants.push((await app.tenancy.catalog.get(t.id))!)
  }
}, 120_000)

/** GET /api/projects for a tenant over a real socket; aborts after `abortAfterMs` or on `signal`. */
function get(slug: string, opts: { signal?: AbortSignal; abortAfterMs?: number } = {}): Promise<number | 'aborted'> {
  return new Promise((resolve) => {
    const signal = opts.signal ?? (opts.abortAfterMs !== undefined ? AbortSignal.timeout(opts.abortAfterMs) : undefined)
    const req = httpRequest(`${base}/api/projects`, { agent: false, headers: { cookie, 'x-tenant-id': slug }, signal }, (res) => {
      res.resume()
      res.on('end', () => resolve(res.statusCode!))
      res.on('error', () => resolve('aborted'))
    })
    req.on('error', () => resolve('aborted'))
    req.end()
  })
}

const stats = () => ctx.app.tenancy.pools.stats()

/** Every tenant answers 200, one after another (each needs the LRU idle pool evicted: the whole budget cycles). */
async function everyTenantServed() {
  for (const t of tenants) expect(await get(t.slug)).toBe(200)
  // …and two at once: both slots are free.
  expect(await Promise.all([get(tenants[0]!.slug), get(tenants[1]!.slug)])).toEqual([200, 200])
}

describe('aborted requests and the connection budget', () => {
  it('1,000 aborted waiting requests leave the queue and the full budget is free afterwards', async () => {
    // Hold the whole budget so every request to another tenant waits.
    const held = [await ctx.app.tenancy.pools.acquire(tenants[0]!), await ctx.app.tenancy.pools.acquire(tenants[1]!)]
    expect(stats()).toMatchObject({ reservedConnections: 2, leases: 2 })
    const ac = new AbortController()
    setMaxListeners(1000, ac.signal) // one listener per request
    try {
      const answers = Array.from({ length: 1000 }, (_, i) => get(tenants[2 + (i % (TENANTS - 2))]!.slug, { signal: ac.signal }))
      await expect.poll(() => stats().waiters, { timeout: 150_000, interval: 50 }).toBe(1000) // a loaded machine takes a while to accept 1,000 sockets
      ac.abort()
      expect(new Set(await Promise.all(answers))).toEqual(new Set(['aborted']))
      await expect.poll(() => stats().waiters, { timeout: 5_000 }).toBe(0)
    } finally {
      ac.abort()
      for (const lease of held) lease.release()
    }
    expect(stats()).toMatchObject({ leases: 0, waiters: 0 })
    await everyTenantServed()
    expect(stats()).toMatchObject({ leases: 0, waiters: 0, budget: 2 })
    expect(stats().reservedConnections).toBeLessThanOrEqual(2)
  }, 240_000)

  it('clients giving up at random moments (waiting, granted, in the handler) never leave a lease behind', async () => {
    const answers = await Promise.all(
      Array.from({ length: 400 }, (_, i) => get(tenants[i % TENANTS]!.slug, { abortAfterMs: Math.floor(Math.random() * 60) })),
    )
    expect(answers.filter((a) => a === 'aborted').length).toBeGreaterThan(0)
    expect(answers.filter((a) => a !== 'aborted' && a !== 200)).toEqual([])
    await expect.poll(() => stats().leases, { timeout: 10_000 }).toBe(0)
    expect(stats().waiters).toBe(0)
    await everyTenantServed()
  }, 120_000)

  it('readiness turns 503 while waiters time out with nothing served, and 200 again once a tenant is served', async () => {
    const impatient = await buildApp(
      ctx.env.configWith({ POOL_CONNECTION_BUDGET: '2', POOL_MAX_PER_TENANT: '1', POOL_ACQUIRE_TIMEOUT_MS: '150' }),
    )
    try {
      const pools = impatient.tenancy.pools
      const held = [await pools.acquire(tenants[0]!), await pools.acquire(tenants[1]!)]
      const headers = { cookie, 'x-tenant-id': tenants[2]!.slug }
      const exhausted = await impatient.inject({ url: '/api/projects', headers })
      expect(exhausted.statusCode).toBe(503)
      expect(exhausted.json()).toMatchObject({ code: 'POOL_EXHAUSTED' })
      const notReady = await impatient.inject('/health/ready')
      expect(notReady.statusCode).toBe(503)
      expect(notReady.json()).toMatchObject({ status: 'unavailable', checks: { database: 'up', redis: 'up', pools: 'down' } })
      for (const lease of held) lease.release()
      expect((await impatient.inject({ url: '/api/projects', headers })).statusCode).toBe(200)
      const ready = await impatient.inject('/health/ready')
      expect(ready.statusCode).toBe(200)
      expect(ready.json().checks.pools).toBe('up')
    } finally {
      await impatient.close()
    }
  })
})
