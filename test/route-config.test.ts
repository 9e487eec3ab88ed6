/**
 * src/core/lib/route-config.ts reads the route's config from Fastify's route context (an internal symbol)
 * instead of building req.routeOptions: this checks the two agree, so a Fastify upgrade that moves the
 * context fails here rather than silently dropping route options (deadline opt-outs, access rules, metrics labels).
 */
import Fastify from 'fastify'
import { describe, expect, it } from 'vitest'
import { routeConfig } from '../src/core/lib/route-config.js'

describe('routeConfig', () => {
  it('is the route options config, with the url pattern and method, for matched, HEAD and unmatched requests', async () => {
    const app = Fastify()
    const seen: { method: string; same: boolean; url: string | undefined; access: unknown }[] = []
    app.addHook('onRequest', (req, _reply, done) => {
      const config = routeConfig(req)
      seen.push({ method: req.method, same: config === req.routeOptions.config, url: config.url, access: config.access })
      done()
    })
    app.get('/things/:id', { config: { access: { minRole: 'viewer' } } }, async () => ({ ok: true }))
    await app.inject({ url: '/things/1' })
    await app.inject({ method: 'HEAD', url: '/things/2' })
    await app.inject({ url: '/nowhere' })
    await app.close()
    expect(seen).toEqual([
      { method: 'GET', same: true, url: '/things/:id', access: { minRole: 'viewer' } },
      { method: 'HEAD', same: true, url: '/things/:id', access: { minRole: 'viewer' } },
      { method: 'GET', same: true, url: undefined, access: undefined },
    ])
  })
})
