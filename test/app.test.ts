
import { describe, expect, it } from 'vitest'
import { buildApp } from './helpers/build-app.js'
import { useApp } from './helpers/use-app.js'

const ctx = useApp()

describe('app basics', () => {
  it('answers liveness and readiness', async () => {
    const live = await ctx.app.inject('/health')
    expect(live.json()).toEqual({ status: 'ok', version: expect.stringMatching(/^\d+\.\d+\.\d+/), uptimeSeconds: expect.any(Number) })
    const ready = await ctx.app.inject('/health/ready')
    expect(ready.statusCode, ready.body).toBe(200)
    // Each database server is reported too: here the config's, the 'default' row.
    expect(ready.json()).toEqual({ status: 'ok', checks: { database: 'up', redis: 'up', pools: 'up' }, servers: { default: { status: 'up', pools: 'up' } } })
  })

  it('answers unknown routes with a JSON 404 and rate limits them', async () => {
    const res = await ctx.app.inject('/nope?x=1')
    expect(res.statusCode).toBe(404)
    expect(res.json()).toEqual({ statusCode: 404, error: 'Not Found', message: 'Route GET /nope not found', code: 'NOT_FOUND' })
    let last = res
    for (let i = 0; i <= 60; i++) last = await ctx.app.inject({ url: '/nope', remoteAddress: '10.9.9.9' })
    expect(last.statusCode).toBe(429)
    expect(last.json()).toMatchObject({ statusCode: 429, code: 'RATE_LIMITED' })
  })

  it('sets security headers', async () => {
    const res = await ctx.app.inject('/health')
    expect(res.headers['content-security-policy']).toBeDefined()
    expect(res.headers['x-content-type-options']).toBe('nosniff')
  })

  it('serves OpenAPI and metrics', async () => {
    const spec = (await ctx.app.inject('/docs/json')).json()
    expect(spec.openapi).toBe('3.0.3')
    expect(spec.paths['/health/ready']).toBeDefined()
    const metrics = await ctx.app.inject('/metrics')
    expect(metrics.body).toContain('http_request_duration_seconds')
    expect(metrics.body).toMatch(/^tenant_pool_budget \d+$/m)
    expect(metrics.body).toMatch(/^tenant_pools_open \d+$/m)
  })

  it('guards /metrics with METRICS_TOKEN when set', async () => {
    const guarded = await buildApp(ctx.env.configWith({ METRICS_TOKEN: 'scrape-me' }))
    try {
      const denied = await guarded.inject('/metrics')
      expect(denied.statusCode).toBe(401)
      expect(denied.json().code).toBe('METRICS_TOKEN_REQUIRED')
      expect((await guarded.inject({ url: '/metrics', headers: { authorization: 'Bearer wrong-token' } })).statusCode).toBe(401)
      const ok = await guarded.inject({ url: '/metrics', headers: { authorization: 'Bearer scrape-me' } })
      expect(ok.statusCode).toBe(200)
      expect(ok.body).toContain('tenant_pool_budget')
    } finally {
      await guarded.close()
    }
  })

  it('reports Redis down as 503 naming it', async () => {
    const broken = await buildApp(ctx.env.configWith({}))
    try {
      broken.redis.disconnect()
      const res = await broken.inject('/health/ready')
      expect(res.statusCode).toBe(503)
      expect(res.json()).toEqual({ status: 'unavailable', checks: { database: 'up', redis: 'down', pools: 'up' }, servers: { default: { status: 'up', pools: 'up' } } })
    } finally {
      await broken.close()
    }
  })

  it('reports the database down as 503 naming it', async () => {
    const broken = await buildApp(ctx.env.configWith({}))
    try {
      await broken.host.sql.end()
      const res = await broken.inject('/health/ready')
      expect(res.statusCode).toBe(503)
      expect(res.json().checks).toEqual({ database: 'down', redis: 'up', pools: 'up' })
    } finally {
      await broken.close()
    }
  })
})
