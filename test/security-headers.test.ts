import helmet from '@fastify/helmet'
import Fastify from 'fastify'
import { describe, expect, it } from 'vitest'
import { HELMET_OPTIONS, securityHeaders } from '../src/core/plugins/external/helmet.js'
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

  it('are on every kind of response: success, 401, 404, a rate-limited route, the docs UI', async () => {
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
})
