/** The shared ioredis client (sessions, rate limits, cache invalidation). Closed with the app. */
import fp from 'fastify-plugin'
import { Redis } from 'ioredis'
import type { AppOptions } from '../../app.js'
import { warnIfRedisNotPersistent } from '../../lib/redis-persistence.js'

declare module 'fastify' {
  interface FastifyInstance {
    redis: Redis
  }
}

export default fp<AppOptions>(
  async (fastify, { config }) => {
    // Fail fast per command when Redis is down (health and rate limits must answer, not hang).
    // Auto-pipelining batches the commands of concurrent requests (session, rate limit) into one write.
    const redis = new Redis(config.redisUrl, { maxRetriesPerRequest: 1, connectTimeout: 2000, lazyConnect: true, enableAutoPipelining: true })
    redis.on('error', (err) => fastify.log.debug({ err }, 'redis error'))
    await redis.connect().catch((err: Error) => {
      throw new Error(`Redis is not reachable at ${config.redisUrl} (${err.message}). Start it with: redis-server --daemonize yes`)
    })
    // Sessions live here: say so at boot when a Redis restart would lose them.
    await warnIfRedisNotPersistent(redis, fastify.log)
    fastify.decorate('redis', redis)
    fastify.addHook('onClose', async () => {
      await redis.quit().catch(() => redis.disconnect())
    })
  },
  { name: 'redis' },
)
