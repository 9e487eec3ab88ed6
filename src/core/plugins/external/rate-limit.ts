/**
 * Rate limits (@fastify/rate-limit), in two tiers:
 *
 * - The global limit (RATE_LIMIT_MAX per client IP per RATE_LIMIT_WINDOW_S, every route without a limit of
 *   its own) is a flood guard, counted IN THIS PROCESS (the library's LocalStore, an LRU of per-IP
 *   counters, read in a synchronous hook). With N app
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
import rateLimit, { type CreateRateLimitOptions, normalizeIP } from '@fastify/rate-limit'
import type { FastifyReply, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import type { AppOptions } from '../../config.js'
import { AppError } from '../../lib/errors.js'

declare module 'fastify' {
  interface FastifyInstance {
    /** A preHandler adding a Redis-backed limit to a route that has its own (429 RATE_LIMITED past it). */
    extraRateLimit(options: CreateRateLimitOptions): (req: FastifyRequest, reply: FastifyReply) => Promise<void>
  }
}

/** The library's in-process store (its package has no typings for this path). */
interface Counted {
  current: number
  ttl: number
}
const LocalStore = createRequire(import.meta.url)('@fastify/rate-limit/store/LocalStore.js') as new (
  continueExceeding: boolean,
  exponentialBackoff: boolean,
  cache?: number,
) => { incr(key: string, cb: (err: Error | null, res: Counted) => void, timeWindow: number, max: number): void }

/** Clients tracked by the in-process global limit (~200 B each); the least recently seen drop out. */
const LOCAL_CLIENTS = 20_000
/** Routes the flood guard leaves alone: the probes (a balancer polls them from few addresses). */
const UNLIMITED = new Set(['/health', '/health/ready'])

export default fp<AppOptions>(
  async (fastify, { config }) => {
    // Route limits (`config.rateLimit`, createRateLimit, fastify.rateLimit) in Redis, through the library.
    await fastify.register(rateLimit, {
      global: false,
      max: config.rateLimit.max,
      timeWindow: config.rateLimit.windowS * 1000,
      redis: fastify.redis,
      nameSpace: `${config.redisPrefix}:rl:`,
      skipOnError: true,
    })

    // The flood guard: the library's LocalStore (fixed window per client IP, an LRU of counters), read in a
    // synchronous hook. Its store answers at once, but the library's own hook is an async function awaiting
    // a promise around that callback, reading req.routeOptions and building a result object: ~5 % of an
    // authenticated API read. The library's 429 and header names. Routes with a limit of their own
    // (config.rateLimit) or `rateLimit: false` are left to the library, as its global limit did.
    const max = config.rateLimit.max
    const windowMs = config.rateLimit.windowS * 1000
    const local = new LocalStore(false, false, LOCAL_CLIENTS)
    let counted: Counted = { current: 0, ttl: 0 }
    const keep = (_err: Error | null, res: Counted) => {
      counted = res // LocalStore calls back synchronously, and never with an error
    }
    // Its counts go out only with the 429 (x-ratelimit-* and Retry-After): they are one process' counts, so
    // behind a balancer "remaining" would be a different number on every answer. The limit a client plans
    // around is its tenant's requests per minute (RateLimit-* headers, features/billing/tenant-requests.ts).
    function floodGuard(req: FastifyRequest, reply: FastifyReply, done: (err?: Error) => void) {
      // normalizeIP's isIPv6 runs Node's IPv6 regex (~1 µs) on every address; an IPv4 one (no ':') is already its own key.
      const ip = req.ip
      local.incr(ip.includes(':') ? normalizeIP(ip) : ip, keep, windowMs, max)
      if (counted.current <= max) return done()
      const resetS = Math.ceil(counted.ttl / 1000)
      reply.header('x-ratelimit-limit', max)
      reply.header('x-ratelimit-remaining', 0)
      reply.header('x-ratelimit-reset', resetS)
      reply.header('retry-after', resetS)
      done(new AppError(429, 'RATE_LIMITED', `Rate limit exceeded, retry in ${resetS} s`))
    }
    fastify.addHook('onRoute', (route) => {
      if (route.config?.rateLimit !== undefined || UNLIMITED.has(route.url)) return
      route.onRequest = [...(route.onRequest === undefined ? [] : Array.isArray(route.onRequest) ? route.onRequest : [route.onRequest]), floodGuard]
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
