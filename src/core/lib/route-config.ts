/**
 * A request's route config (`config` of the route options, with its `url` pattern and `method`) read
 * straight from the route's context. `req.routeOptions` builds a fresh twelve-field object on every read
 * (it looks up the body limit and the version constraint each time), and the request plane read it three
 * or four times per request (deadline, tenant guard, metrics, rate limit). The context symbol is Fastify's
 * own (fastify/lib/symbols.js, pinned with fastify); test/route-config.test.ts checks the two agree.
 */
import { createRequire } from 'node:module'
import type { FastifyContextConfig, FastifyRequest } from 'fastify'

const { kRouteContext } = createRequire(import.meta.url)('fastify/lib/symbols.js') as { kRouteContext: symbol }

export type RouteConfig = FastifyContextConfig & { url?: string; method?: string }

export const routeConfig = (req: FastifyRequest): RouteConfig =>
  (req as unknown as Record<symbol, { config: RouteConfig }>)[kRouteContext]!.config
