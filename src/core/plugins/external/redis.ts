/** The shared ioredis client (sessions, rate limits, cache invalidation). Closed with the app. */
import fp from 'fastify-plugin'
import type { Redis } from 'ioredis'
import { createRedis } from '../../lib/redis.js'
import type { AppOptions } from '../../config.js'
import { warnIfRedisNotPersistent } from '../../lib/redis-persistence.js'

declare module 'fastify' {
  interface FastifyInstance {
    redis: Redis
  }
}

export default fp<AppOptions>(
  async (fastify, { config }) => {
    // Fail fast per command when Redis is down (requests answer 503, health and rate limits answer, not
    // hang): REDIS_COMMAND_TIMEOUT_MS, one retry, capped reconnect backoff (lib/redis.ts).
    const redis = createRedis(config, config.redisTimeouts, fastify.log, 'app', { lazyConnect: true })
    await redis.connect().catch((err: Error) => {
      if (config.redisCluster)
        throw new Error(
          `Redis Cluster is not reachable from ${config.redisUrl} (${err.message}). REDIS_CLUSTER=true needs REDIS_URL to name a node of a cluster (cluster-enabled yes); unset it for a single Redis`,
        )
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
