/**
 * What a tenant's plan says about each of its requests, checked right after the tenant guard on every
 * tenant-scoped route (a route-level preValidation hook, which runs after the /api scope's guard; it
 * does nothing where no tenant was resolved):
 *
 * - An API key works only while the plan has `api_access`: a tenant that lost it (downgrade, comp
 *   ended) gets 403 FEATURE_NOT_IN_PLAN on every key request; its keys work again when it regains it.
 * - Requests per minute (`limits.requestsPerMinute`), counted in Redis across instances with
 *   @fastify/rate-limit: a person's requests (session) count against the tenant, each API key has its
 *   own count, so a runaway integration can't lock the tenant's people out. Every answer carries
 *   RateLimit-Limit / RateLimit-Remaining / RateLimit-Reset; past the limit, 429 RATE_LIMITED with
 *   Retry-After. If Redis is down the request is let through (like the kit's other limits).
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { AppError } from '../../core/lib/errors.js'
import type { Entitlements } from './entitlements.js'
import { requireApiAccess } from './entitlements.js'

const WINDOW_MS = 60_000
const kRpm = Symbol('tenantRequestsPerMinute')
type WithRpm = FastifyRequest & { [kRpm]?: number }

export function createTenantRequestHook(
  fastify: FastifyInstance,
  entitlements: (tenantId: string) => Promise<Entitlements>,
  cached: (tenantId: string) => Entitlements | undefined = () => undefined,
) {
  const limitOf = (req: FastifyRequest) => (req as WithRpm)[kRpm] ?? Number.MAX_SAFE_INTEGER
  const perTenant = fastify.createRateLimit({ keyGenerator: (req) => `tenant:${req.tenant!.id}`, max: limitOf, timeWindow: WINDOW_MS })
  const perApiKey = fastify.createRateLimit({ keyGenerator: (req) => `api-key:${req.apiKey!.id}`, max: limitOf, timeWindow: WINDOW_MS })

  async function count(req: FastifyRequest, reply: FastifyReply, rpm: number): Promise<void> {
    const r = await (req.apiKey ? perApiKey : perTenant)(req)
    if (r.isAllowed) return
    reply.header('ratelimit-limit', r.max)
    reply.header('ratelimit-remaining', r.remaining)
    reply.header('ratelimit-reset', r.ttlInSeconds)
    if (r.isExceeded) {
      reply.header('retry-after', r.ttlInSeconds)
      throw new AppError(429, 'RATE_LIMITED', `This ${req.apiKey ? 'API key' : 'tenant'} may make ${rpm} requests per minute; retry in ${r.ttlInSeconds} s`)
    }
  }
  /** undefined when the plan asks nothing more of this request; a promise while it is counted. */
  function check(req: FastifyRequest, reply: FastifyReply, e: Entitlements): Promise<void> | undefined {
    if (req.apiKey) requireApiAccess(e)
    const rpm = e.limits.requestsPerMinute
    if (!rpm) return undefined
    ;(req as WithRpm)[kRpm] = rpm
    return count(req, reply, rpm)
  }

  // Callback style: with the plan cached and no per-minute limit, nothing here needs a promise.
  return function tenantRequest(req: FastifyRequest, reply: FastifyReply, done: (err?: Error) => void) {
    const tenant = req.tenant
    if (!tenant) return done()
    const e = cached(tenant.id)
    if (!e) {
      entitlements(tenant.id)
        .then((loaded) => check(req, reply, loaded))
        .then(() => done(), done)
      return
    }
    let counting: Promise<void> | undefined
    try {
      counting = check(req, reply, e)
    } catch (err) {
      return done(err as Error)
    }
    if (counting) counting.then(() => done(), done)
    else done()
  }
}
