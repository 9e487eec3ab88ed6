/**
 * Rate limits (@fastify/rate-limit), in two tiers:
 *
 * - The global limit (RATE_LIMIT_MAX per client IP per RATE_LIMIT_WINDOW_S, every route) is a flood
 *   guard, counted IN THIS PROCESS (the library's LocalStore, an LRU of per-IP counters). With N app
 *   instances behind a balancer a client may get up to N × the limit. Counting it in Redis cost a
 *   Redis round trip on every request (~20 % of an authenticated API read's throughput) for a limit
 *   that only needs to damp floods; anything that needs a cluster-wide count sets a route limit.
 * - Route limits (login, signup, OAuth, tenant creation, checkout, 404s; `config.rateLimit` or
 *   `fastify.rateLimit({...})`) stay in Redis, shared by every instance: brute force against
 *   credentials is capped per IP and per email however many instances there are.
 *
 * A second limit on one route (per email on login and signup, after the route's per-IP one) is
 * `fastify.extraRateLimit({...})` as a preHandler: the library's own `fastify.rateLimit(...)` handler
 * does nothing on a request another of its limits already checked (one shared "ran" flag), so stacked
 * that way the per-email limit was never enforced.
 *
 * If Redis is down, requests are let through rather than failing the whole API (readiness reports
 * Redis down).
 */
import { createRequire } from 'node:module'
import rateLimit, { type CreateRateLimitOptions, type FastifyRateLimitStore as Store } from '@fastify/rate-limit'
import type { FastifyReply, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import type { Redis } from 'ioredis'
import type { AppOptions } from '../../config.js'
import { AppError } from '../../lib/errors.js'

declare module 'fastify' {
  interface FastifyInstance {
    /** A preHandler adding a Redis-backed limit to a route that has its own (429 RATE_LIMITED past it). */
    extraRateLimit(options: CreateRateLimitOptions): (req: FastifyRequest, reply: FastifyReply) => Promise<void>
  }
}

type Callback = Parameters<Store['incr']>[1]
/** `read` (counting without incrementing, for `{ increment: false }`) is in the stores but not the typings. */
type StoreWithRead = Store & { read: Store['incr'] }

// The library's own stores (its package has no typings for these paths).
const require = createRequire(import.meta.url)
const LocalStore = require('@fastify/rate-limit/store/LocalStore.js') as new (continueExceeding: boolean, exponentialBackoff: boolean, cache?: number) => StoreWithRead
const RedisStore = require('@fastify/rate-limit/store/RedisStore.js') as new (
  continueExceeding: boolean,
  exponentialBackoff: boolean,
  redis: Redis,
  key: string,
) => Store

/** Clients tracked by the in-process global limit (~200 B each); the least recently seen drop out. */
const LOCAL_CLIENTS = 20_000

/** Global counts in process; every child (a route's or `fastify.rateLimit(...)`'s store) in Redis. */
function tieredStore(redis: Redis, nameSpace: string) {
  return class TieredStore implements Store {
    // (continueExceeding and exponentialBackoff stay off, as everywhere in this app.)
    private readonly local = new LocalStore(false, false, LOCAL_CLIENTS)
    private readonly shared = new RedisStore(false, false, redis, nameSpace)
    incr(key: string, cb: Callback, timeWindow: number, max: number) {
      this.local.incr(key, cb, timeWindow, max)
    }
    read(key: string, cb: Callback, timeWindow: number, max: number) {
      this.local.read(key, cb, timeWindow, max)
    }
    child(routeOptions: Parameters<Store['child']>[0]) {
      return this.shared.child(routeOptions)
    }
  }
}

export default fp<AppOptions>(
  async (fastify, { config }) => {
    await fastify.register(rateLimit, {
      global: true,
      max: config.rateLimit.max,
      timeWindow: config.rateLimit.windowS * 1000,
      store: tieredStore(fastify.redis, `${config.redisPrefix}:rl:`),
      skipOnError: true,
      allowList: (req) => req.url === '/health' || req.url === '/health/ready',
    })
    fastify.decorate('extraRateLimit', (options: CreateRateLimitOptions) => {
      const check = fastify.createRateLimit(options)
      return async (req: FastifyRequest, reply: FastifyReply) => {
        const limit = await check(req)
        if (limit.isAllowed || !limit.isExceeded) return
        reply.header('retry-after', limit.ttlInSeconds)
        throw new AppError(429, 'RATE_LIMITED', `Rate limit exceeded, retry in ${limit.ttlInSeconds} s`)
      }
    })
  },
  { name: 'rate-limit', dependencies: ['redis'] },
)
