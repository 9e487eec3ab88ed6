/**
 * The OpenAPI side of the per-tenant request limit (tenant-requests.ts): tenant routes' 429 documents
 * Retry-After and the RateLimit-* headers (every answer of a tenant on a limited plan carries the latter).
 */
import type { RouteOptions } from 'fastify'
import { Type } from 'typebox'

/** Routes of the guarded tenant scope, mounted at /api and /t/:tenant/api (src/core/routes/api.ts). */
export const isTenantRoute = (route: Pick<RouteOptions, 'url'>) => /^\/(t\/:tenant\/)?api(\/|$)/.test(route.url)

const seconds = (description: string) => Type.Integer({ minimum: 0, description })

export const RATE_LIMIT_HEADERS = {
  'ratelimit-limit': Type.Integer({ minimum: 1, description: "Requests per minute the tenant's plan allows (per API key for key requests)" }),
  'ratelimit-remaining': Type.Integer({ minimum: 0, description: 'Requests left in the current minute' }),
  'ratelimit-reset': seconds('Seconds until the current window ends'),
}

const tooManyRequests = {
  $ref: 'Error#',
  description: "Too Many Requests: past RATE_LIMIT_MAX per client, or past the tenant plan's requests per minute (code RATE_LIMITED)",
  headers: { 'retry-after': seconds('Seconds to wait before retrying'), ...RATE_LIMIT_HEADERS },
}

type Documented = { hide?: boolean; response?: Record<string, unknown> }

export function documentTenantRateLimit(route: RouteOptions): void {
  const schema = route.schema as Documented | undefined
  if (!schema || schema.hide) return
  // A new schema object: a scope mounted twice shares its schema objects.
  route.schema = { ...schema, response: { ...schema.response, 429: tooManyRequests } } as RouteOptions['schema']
}
