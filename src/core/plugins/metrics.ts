/**
 * Prometheus metrics on GET /metrics: process defaults, HTTP latency by route, and gauges other
 * plugins register (pool manager, queues) through `fastify.metrics.registry`. With METRICS_TOKEN set
 * the scraper must send `Authorization: Bearer <token>`; in production without a token the endpoint
 * is off (route latencies and pool gauges are not for the public).
 */
import { timingSafeEqual } from 'node:crypto'
import fp from 'fastify-plugin'
import { Histogram, Registry, collectDefaultMetrics } from 'prom-client'
import type { AppOptions } from '../config.js'
import { unauthorized } from '../lib/errors.js'

declare module 'fastify' {
  interface FastifyInstance {
    metrics: { registry: Registry }
  }
}

export default fp<AppOptions>(
  async (fastify, { config }) => {
    const registry = new Registry()
    collectDefaultMetrics({ register: registry })
    const latency = new Histogram({
      name: 'http_request_duration_seconds',
      help: 'HTTP request latency by route and status',
      labelNames: ['method', 'route', 'status'],
      buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers: [registry],
    })
    fastify.decorate('metrics', { registry })
    fastify.addHook('onResponse', async (req, reply) => {
      // routeOptions.url is the pattern (/api/projects/:id), so label cardinality stays bounded.
      latency.observe({ method: req.method, route: req.routeOptions.url ?? 'unmatched', status: reply.statusCode }, reply.elapsedTime / 1000)
    })
    const token = config.metricsToken
    if (!token && config.env === 'production') return
    const expected = token ? Buffer.from(`Bearer ${token}`) : undefined
    fastify.get('/metrics', { schema: { hide: true }, config: { rateLimit: false, underPressure: false } }, async (req, reply) => {
      const given = Buffer.from(req.headers.authorization ?? '')
      if (expected && (given.length !== expected.length || !timingSafeEqual(given, expected))) throw unauthorized('METRICS_TOKEN_REQUIRED', 'Send the metrics token as a Bearer token')
      reply.type(registry.contentType)
      return registry.metrics()
    })
  },
  { name: 'metrics' },
)
