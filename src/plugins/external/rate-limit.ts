/**
 * Redis-backed rate limits, shared by every instance. Global limit is generous; sensitive routes
 * (login, signup, 404s) set their own in route config. If Redis is down, requests are let through
 * rather than failing the whole API (readiness reports Redis down).
 */
import rateLimit from '@fastify/rate-limit'
import fp from 'fastify-plugin'
import type { AppOptions } from '../../app.js'

export default fp<AppOptions>(
  async (fastify, { config }) => {
    await fastify.register(rateLimit, {
      global: true,
      max: config.rateLimit.max,
      timeWindow: config.rateLimit.windowS * 1000,
      redis: fastify.redis,
      nameSpace: `${config.redisPrefix}:rl:`,
      skipOnError: true,
      allowList: (req) => req.url === '/health' || req.url === '/health/ready',
    })
  },
  { name: 'rate-limit', dependencies: ['redis'] },
)
