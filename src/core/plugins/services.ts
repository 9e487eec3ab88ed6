/**
 * The kit's long-lived services (src/services.ts: catalog, pools, provisioner, mailer, task manager)
 * on `fastify.services`: the same wiring the worker and the CLI use, sharing the app's host pool
 * and Redis client. Closed with the app.
 */
import fp from 'fastify-plugin'
import type { Logger } from 'pino'
import type { AppOptions } from '../config.js'
import { createServices, type Services } from '../../services.js'

declare module 'fastify' {
  interface FastifyInstance {
    services: Services
  }
}

export default fp<AppOptions>(
  async (fastify, { config }) => {
    const services = createServices(config, fastify.log as Logger, { host: fastify.host, redis: fastify.redis })
    await services.catalog.ready
    fastify.decorate('services', services)
    // This process writes outbox rows (webhooks), so it also sweeps them; the worker does too (one at a time).
    fastify.addHook('onReady', async () => services.outbox.startSweeper(config.jobs.outboxSweepIntervalMs))
    fastify.addHook('onClose', () => services.close())
  },
  { name: 'services', dependencies: ['host-db', 'redis'] },
)
