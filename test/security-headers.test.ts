import helmet from '@fastify/helmet'
import Fastify from 'fastify'
import { describe, expect, it } from 'vitest'
import { API_SECURITY_HEADERS, HELMET_OPTIONS, isApiRoute, securityHeaders } from '../src/core/plugins/external/helmet.js'
import { createClient } from './helpers/client.js'
import { useApp } from './helpers/use-app.js'

const ctx = useApp()

/** What @fastify/helmet itself sets for our options, from a bare Fastify with only that plugin. */
async function fastifyHelmetHeaders() {
  const bare = Fastify()
  try {
    await bare.register(helmet, HELMET_OPTIONS)
    bare.get('/', async () => ({}))
    const res = await bare.inject('/')
    const { 'content-type': _t, 'content-length': _l, date: _d, connection: _c, ...rest } = res.headers
    return rest
  } finally {
    await bare.close()
  }
}

describe('security headers (precomputed once from helmet)', () => {
  it('are exactly the headers @fastify/helmet sets for the same options', async () => {
    const expected = await fastifyHelmetHeaders()
    expect(Object.keys(expected).length).toBeGreaterThan(10)
    expect(securityHeaders()).toEqual(expected)
  })

  it('pages (not JSON API routes) carry all of them: success, 401, 404, a rate-limited route, the docs UI', async () => {
    const expected = await fastifyHelmetHeaders()
    const requests = [
      { url: '/health', status: 200 },
      { url: '/me', status: 401 },
      { url: '/nope', status: 404 },
      { method: 'POST' as const, url: '/auth/login', payload: { email: 'x@example.com', password: 'wrong password here' }, status: 401 },
      { url: '/docs/json', status: 200 },
      { url: '/docs/static/index.html', status: 302 },
      { url: '/docs/static/swagger-ui.css', status: 200 },
    ]
    for (const { status, ...req } of requests) {
      const res = await ctx.app.inject(req)
      expect(res.statusCode, req.url).toBe(status)
      for (const [name, value] of Object.entries(expected)) expect(res.headers[name], `${req.url} ${name}`).toBe(value)
    }
  })

  it('JSON API answers carry the API set instead (no-store, CSP none, DENY), successes and refusals alike', async () => {
    expect(API_SECURITY_HEADERS['strict-transport-security']).toBe(securityHeaders()['strict-transport-security'])
    const c = createClient(ctx.app)
    const signup = await c.signup(`headers-${Date.now()}@example.com`)
    const tenant = signup.json().tenant.id as string
    const answers = [
      await c.get('/api/projects'), // 200 through the tenant guard
      await c.get(`/t/${tenant}/api/projects`),
      await c.get('/api/projects/not-a-uuid'), // 400
      await ctx.app.inject({ url: '/api/projects' }), // 401, no session
      await c.get('/admin/api/tenants'), // 403, not a platform admin
    ]
    const pageOnly = Object.keys(securityHeaders()).filter((h) => !(h in API_SECURITY_HEADERS))
    expect(pageOnly).toEqual(expect.arrayContaining(['cross-origin-opener-policy', 'x-dns-prefetch-control', 'origin-agent-cluster']))
    for (const res of answers) {
      expect([200, 400, 401, 403], res.body).toContain(res.statusCode)
      for (const [name, value] of Object.entries(API_SECURITY_HEADERS)) expect(res.headers[name], `${res.statusCode} ${name}`).toBe(value)
      for (const name of pageOnly) expect(res.headers[name], name).toBeUndefined()
    }
    expect(answers.map((r) => r.statusCode)).toEqual([200, 200, 400, 401, 403])
  })

  it('tells API routes by their path', () => {
    for (const url of ['/api/projects', '/api/projects/:id', '/t/:tenant/api/settings', '/admin/api/tenants', '/api']) expect(isApiRoute(url), url).toBe(true)
    for (const url of ['/me', '/auth/login', '/docs/json', '/health', '/tenants', '/webhooks/github', '/apiary', '/t/:tenant/apis']) expect(isApiRoute(url), url).toBe(false)
  })
})
