/**
 * Requests per tenant per minute from the plan (limits.requestsPerMinute), counted in Redis: a tenant
 * past its limit gets 429 RATE_LIMITED with Retry-After and RateLimit-* headers while another tenant is
 * served; each API key has its own count.
 */
import { beforeAll, describe, expect, it } from 'vitest'
import { seedPlans } from '../../src/features/billing/plans.js'
import { tenantWith } from '../helpers/tenant-fixtures.js'
import { useApp } from '../helpers/use-app.js'

const ctx = useApp()
const RPM = 5

beforeAll(async () => {
  await seedPlans(ctx.app.host.db, [
    {
      key: 'free',
      name: 'Free',
      amountMonthly: 0,
      amountYearly: 0,
      currency: 'usd',
      trialDays: 0,
      features: ['projects', 'members', 'api_access'],
      limits: { requestsPerMinute: RPM },
      tierLevel: 0,
      sortOrder: 0,
    },
  ])
})

describe('per-tenant rate limit', () => {
  it('tenant A over its limit gets 429 while tenant B is served; an API key counts on its own', async () => {
    const a = await tenantWith(ctx.app, { verified: true })
    const b = await tenantWith(ctx.app)
    const key = (await a.as(a.admin).post('/api-keys', { name: 'ci', role: 'viewer' })).json().secret as string
    // That POST counted: A has RPM - 1 left this minute.
    const statuses: number[] = []
    let last = await a.as(a.viewer).get('/projects')
    statuses.push(last.statusCode)
    expect(last.headers['ratelimit-limit']).toBe(String(RPM))
    expect(Number(last.headers['ratelimit-remaining'])).toBe(RPM - 2)
    while (last.statusCode === 200 && statuses.length < RPM + 2) {
      last = await a.as(a.viewer).get('/projects')
      statuses.push(last.statusCode)
    }
    expect(statuses).toEqual([200, 200, 200, 200, 429])
    expect(last.json()).toMatchObject({ statusCode: 429, error: 'Too Many Requests', code: 'RATE_LIMITED' })
    const retryAfter = Number(last.headers['retry-after'])
    expect(retryAfter).toBeGreaterThan(0)
    expect(retryAfter).toBeLessThanOrEqual(60)
    expect(last.headers['ratelimit-remaining']).toBe('0')
    expect(Number(last.headers['ratelimit-reset'])).toBe(retryAfter)
    // Every member of A is refused (the count is the tenant's), on either mount.
    expect((await a.as(a.owner).get('/projects')).statusCode).toBe(429)
    expect((await a.owner.c.get(`/t/${a.slug}/api/projects`)).statusCode).toBe(429)

    // Tenant B has its own count.
    const served = await b.as(b.viewer).get('/projects')
    expect(served.statusCode).toBe(200)
    expect(Number(served.headers['ratelimit-remaining'])).toBe(RPM - 1)

    // A's API key has its own count too: an integration does not share the people's.
    const withKey = () => ctx.app.inject({ method: 'GET', url: '/api/projects', headers: { authorization: `Bearer ${key}` } })
    const keyStatuses: number[] = []
    for (let i = 0; i <= RPM; i++) keyStatuses.push((await withKey()).statusCode)
    expect(keyStatuses).toEqual([200, 200, 200, 200, 200, 429])
  })

  it('OpenAPI documents the 429 of tenant routes with Retry-After and RateLimit-* headers', async () => {
    const doc = ctx.app.swagger() as unknown as { paths: Record<string, Record<string, { responses: Record<string, { headers?: Record<string, unknown> }> }>> }
    for (const path of ['/api/projects', '/t/{tenant}/api/projects']) {
      const headers = doc.paths[path]!.get!.responses['429']!.headers ?? {}
      expect(Object.keys(headers).sort(), path).toEqual(['ratelimit-limit', 'ratelimit-remaining', 'ratelimit-reset', 'retry-after'])
    }
    // Elsewhere only Retry-After (src/core/lib/openapi.ts): the RateLimit-* headers are the tenant plan's.
    expect(Object.keys(doc.paths['/auth/login']!.post!.responses['429']!.headers ?? {})).toEqual(['retry-after'])
  })
})
