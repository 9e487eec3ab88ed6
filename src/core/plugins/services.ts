/**
 * The kit's long-lived services (core/services.ts: catalog, pools, provisioner, mailer, task manager,
 * with the features' jobs and lifecycle steps) on `fastify.services`: the same wiring the worker and
 * the CLI use, sharing the app's host pool and Redis client. Closed with the app.
 */
import fp from 'fastify-plugin'
import type { Logger } from 'pino'
import type { AppOptions } from '../config.js'
import type { Feature } from '../feature.js'
import { createCoreServices, type Services } from '../core-services.js'

declare module 'fastify' {
  interface FastifyInstance {
    services: Services
  }
}

export default fp<AppOptions & { features: readonly Feature[] }>(
  async (fastify, { config, features }) => {
    const services = createCoreServices(config, fastify.log as Logger, { host: fastify.host, redis: fastify.redis, features })
    await services.catalog.ready
    fastify.decorate('services', services)
    fastify.metrics.include(services.metrics.registry)
    // This process writes outbox rows (webhooks), so it also sweeps them; the worker does too (one at a time).
    fastify.addHook('onReady', async () => services.outbox.startSweeper(config.jobs.outboxSweepIntervalMs))
    fastify.addHook('onClose', () => services.close())
  },
  { name: 'services', dependencies: ['host-db', 'redis', 'metrics'] },
)
