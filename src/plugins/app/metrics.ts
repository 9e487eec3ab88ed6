/**
 * Prometheus metrics on GET /metrics: process defaults, HTTP latency by route, and gauges other
 * plugins register (pool manager, queues) through `fastify.metrics.registry`.
 */
import fp from 'fastify-plugin'
import { Histogram, Registry, collectDefaultMetrics } from 'prom-client'

declare module 'fastify' {
  interface FastifyInstance {
    metrics: { registry: Registry }
  }
}

export default fp(
  async (fastify) => {
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
    fastify.get('/metrics', { schema: { hide: true } }, async (_req, reply) => {
      reply.type(registry.contentType)
      return registry.metrics()
    })
  },
  { name: 'metrics' },
)
