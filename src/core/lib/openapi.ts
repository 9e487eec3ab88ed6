/**
 * The OpenAPI contract, derived mechanically from how routes are configured, so a route added later
 * is documented like its neighbours without anyone remembering to:
 *
 * - `documentRoute` (a root onRoute hook, src/core/plugins/external/swagger.ts) adds to every route's
 *   response schemas the errors its configuration can produce: 500/503 everywhere, 429 under a rate
 *   limit, 400 where anything is validated, 400/403 (CSRF)/413/415 on writes, 401 for a route-level
 *   `requireUser`, 402/403 for `config.billing`. They go into the route's own schema, not only the
 *   document: Fastify serialises with them, and the tests' contract check (test/helpers/contract.ts)
 *   fails any status a route answers without documenting it.
 * - `authScope(kind)` is an onRoute hook a route scope installs next to its guard (routes/api for the
 *   tenant guard, /me and /tenants for `requireUser`): it records `config.auth` and the guard's errors.
 * - `openapiTransform` / `transformDocument` (doc time): security per operation, the `tenant` path
 *   parameter on /t/{tenant}/… (the optional X-Tenant-ID header on the other tenant routes), the CSRF
 *   header on cookie writes, operationIds, literal unions as one `enum`, nullable instead of
 *   `type: null`, parameters with a default not required, optional bodies.
 */
import { STATUS_CODES } from 'node:http'
import type { RouteOptions } from 'fastify'
import { Type } from 'typebox'
import { errorResponse } from './schemas.js'

/** Who may call a route: anyone, a logged-in session, or a tenant member (session or API key). */
export type RouteAuth = 'public' | 'session' | 'tenant'

declare module 'fastify' {
  interface FastifyContextConfig {
    /** Set by `authScope` (or a route itself): decides the documented security and auth errors. */
    auth?: RouteAuth
  }
}

type Schema = Record<string, unknown>
type RouteSchema = {
  hide?: boolean
  params?: Schema
  querystring?: Schema
  body?: Schema
  headers?: Schema
  response?: Record<string, unknown>
  operationId?: string
  summary?: string
  security?: unknown
}
type Route = Pick<RouteOptions, 'method' | 'url' | 'config'> & {
  schema?: RouteSchema
  preHandler?: unknown
  onRequest?: unknown
  preValidation?: unknown
}

const WRITES = new Set(['POST', 'PUT', 'PATCH', 'DELETE'])
const methodsOf = (route: Route) => (Array.isArray(route.method) ? route.method : [route.method]) as string[]
const isWrite = (route: Route) => methodsOf(route).some((m) => WRITES.has(m))
const hooksOf = (route: Route) => [route.onRequest, route.preValidation, route.preHandler].flat().filter(Boolean)
/** Routes outside the contract: hidden ones (Swagger UI's own files, Bull Board, /metrics). */
const documented = (route: Route): route is Route & { schema: RouteSchema } => !!route.schema && !route.schema.hide

/** Add error responses for `codes` that the route doesn't already describe (its own win). */
export function addErrorResponses(route: Route & { schema: RouteSchema }, codes: readonly number[]) {
  const response = { ...route.schema.response }
  for (const code of codes) if (!(code in response)) response[code] = errorResponse(code)
  // A new schema object: route schemas share objects (a scope mounted twice), never mutate them.
  route.schema = { ...route.schema, response }
}

/** The root onRoute hook: errors every route can give, from its own configuration. */
export function documentRoute(routeOptions: RouteOptions, requireUser?: unknown) {
  const route = routeOptions as Route
  if (!documented(route)) return
  const { schema } = route
  const config = (route.config ?? {}) as NonNullable<RouteOptions['config']> & { rateLimit?: unknown; billing?: unknown }
  const codes = [500, 503]
  if (config.rateLimit !== false) codes.push(429)
  if (schema.params || schema.querystring || schema.body || schema.headers) codes.push(400)
  if (isWrite(route)) codes.push(400, 413, 415, ...(config.csrf === false ? [] : [403]))
  if (config.billing) codes.push(402, 403)
  if (requireUser && hooksOf(route).includes(requireUser)) {
    route.config = { ...config, auth: config.auth ?? 'session' }
    codes.push(401)
  }
  addErrorResponses(route, codes)
}

/** What each guard answers on its own (see the guards: plugins/app/auth.ts, plugins/app/tenancy.ts). */
const GUARD_ERRORS: Record<Exclude<RouteAuth, 'public'>, number[]> = {
  // 401 no session / SESSION_REQUIRED for a bearer token
  session: [401],
  // 400 TENANT_REQUIRED · 401 · 403 TENANT_SUSPENDED/INSUFFICIENT_ROLE · 404 TENANT_NOT_FOUND · 409 TENANT_NOT_READY · 503 POOL_EXHAUSTED
  tenant: [400, 401, 403, 404, 409, 503],
}

/** An onRoute hook for a scope whose every route sits behind a guard (install it next to the guard). */
export const authScope = (auth: Exclude<RouteAuth, 'public'>) => (route: RouteOptions) => {
  const r = route as Route
  if (!documented(r)) return
  r.config = { ...r.config, auth }
  addErrorResponses(r, GUARD_ERRORS[auth])
}

const SECURITY: Record<RouteAuth, unknown[]> = {
  public: [],
  session: [{ session: [] }],
  tenant: [{ session: [] }, { apiKey: [] }],
}

/** camelCase operationId from method and path: GET /t/:tenant/api/projects/:id → getTByTenantApiProjectsById. */
export function operationIdFor(method: string, url: string): string {
  const words = url
    .split('/')
    .filter(Boolean)
    .map((seg) => (seg.startsWith(':') ? `by-${seg.slice(1)}` : seg))
    .flatMap((seg) => seg.split(/[^A-Za-z0-9]+/))
    .filter(Boolean)
    .map((w) => w[0]!.toUpperCase() + w.slice(1))
  return method.toLowerCase() + words.join('')
}

const CsrfHeader = Type.Optional(
  Type.String({ description: 'Required with a session cookie on writes: the token from GET /auth/csrf (API keys need none)' }),
) as unknown as Schema
const TenantParam = Type.String({ description: 'Tenant slug or id' }) as unknown as Schema
/** src/core/tenancy/resolve.ts reads it on every tenant route; /t/{tenant}/… names the tenant in the path instead. */
const TenantHeader = Type.Optional(
  Type.String({
    pattern: '^[A-Za-z0-9-]{1,63}$',
    description:
      "Tenant slug or id (first match wins: this header, a subdomain of TENANT_DOMAIN_SUFFIX, the session's active tenant); a malformed one is 400 INVALID_TENANT_REF",
  }),
) as unknown as Schema

const RetryAfterHeader = { schema: { type: 'integer', minimum: 0 }, description: 'Seconds to wait before retrying' }

/** Bodies declared `Type.Optional(...)`, by operation, for `transformDocument` (Fastify's swagger marks every body required). */
type OptionalBodies = Set<string>
const opKey = (method: string, url: string) => `${method.toLowerCase()} ${url.replace(/:(\w+)/g, '{$1}')}`

/** @fastify/swagger's per-route `transform`: the document's view of a route (runtime validation untouched). */
export function openapiTransform(optionalBodies: OptionalBodies) {
  return ({ schema, url, route }: { schema: RouteSchema; url: string; route: Route }) => {
    if (!schema || schema.hide) return { schema, url }
    const auth: RouteAuth = route.config?.auth ?? 'public'
    const out: RouteSchema = { ...schema }
    out.operationId ??= operationIdFor(methodsOf(route)[0]!, url)
    out.security ??= SECURITY[auth]
    if (auth !== 'public' && isWrite(route) && route.config?.csrf !== false) {
      out.headers = withProperty(out.headers, 'x-csrf-token', CsrfHeader, false)
    }
    if (url.includes('/:tenant/') && !(out.params as { properties?: Schema } | undefined)?.properties?.tenant) {
      out.params = withProperty(out.params, 'tenant', TenantParam, true)
    } else if (auth === 'tenant') {
      // Without it a client generated from the document could only reach the session's active tenant here.
      out.headers = withProperty(out.headers, 'x-tenant-id', TenantHeader, false)
    }
    if (schema.body && (schema.body as Record<string, unknown>)['~optional'])
      for (const m of methodsOf(route)) optionalBodies.add(opKey(m, url))
    return { schema: out, url }
  }
}

/** An object schema with one more property (a new object; the route's own schema is left alone). */
function withProperty(object: Schema | undefined, name: string, property: Schema, required: boolean): Schema {
  const base = object ?? { type: 'object', properties: {} }
  const properties = { [name]: property, ...(base.properties as Schema) }
  const requiredList = [...((base.required as string[]) ?? [])]
  if (required && !requiredList.includes(name)) requiredList.unshift(name)
  return { ...base, type: 'object', properties, ...(requiredList.length ? { required: requiredList } : {}) }
}

type Json = Record<string, unknown>
const isObject = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v)

/**
 * OpenAPI 3.0 shapes for what TypeBox writes as JSON Schema: a union of literals becomes one `enum`
 * (Swagger UI then lists every value), `{type: 'null'}` in a union becomes `nullable: true`.
 */
export function simplifySchema(node: unknown): unknown {
  if (Array.isArray(node)) return node.map(simplifySchema)
  if (!isObject(node)) return node
  const out: Json = {}
  for (const [k, v] of Object.entries(node)) out[k] = simplifySchema(v)
  const anyOf = out.anyOf
  if (!Array.isArray(anyOf)) return out
  // (@fastify/swagger writes `const` as a one-value enum already; a plain JSON Schema may not.)
  let members = (anyOf as Json[]).map(({ const: value, ...m }) => (value === undefined ? m : { ...m, enum: [value] }))
  const nullable = members.some((m) => m.type === 'null')
  members = members.filter((m) => m.type !== 'null')
  const literalType = members[0]?.type
  const literals =
    members.length > 0 &&
    members.every((m) => Array.isArray(m.enum) && m.type === literalType && Object.keys(m).every((k) => k === 'type' || k === 'enum'))
  const { anyOf: _, ...rest } = out
  let merged: Json
  if (literals) merged = { ...rest, type: literalType, enum: members.flatMap((m) => m.enum as unknown[]) }
  else if (members.length === 1) merged = { ...members[0], ...rest }
  else merged = { ...rest, anyOf: members }
  if (nullable) {
    merged.nullable = true
    if (Array.isArray(merged.enum)) merged.enum = [...merged.enum, null]
  }
  return merged
}

/** @fastify/swagger's `transformObject`: whole-document rules. */
export function transformDocument(optionalBodies: OptionalBodies) {
  return ({ openapiObject }: { openapiObject: Json }) => {
    const doc = simplifySchema(openapiObject) as Json
    for (const [url, item] of Object.entries((doc.paths ?? {}) as Record<string, Json>)) {
      for (const [method, op] of Object.entries(item) as [string, Json][]) {
        // A query parameter with a default is optional to the caller (validation fills the default in).
        for (const p of (op.parameters ?? []) as Json[]) {
          if (p.in === 'query' && isObject(p.schema) && p.schema.default !== undefined) p.required = false
        }
        if (isObject(op.requestBody) && optionalBodies.has(opKey(method, url))) op.requestBody.required = false
        // A streamed upload's body schema validates nothing (Type.Unknown: the handler reads a stream), so it
        // has no type; documented as what it is on the wire, bytes. (Swagger UI stops rendering at a typeless body.)
        for (const [mediaType, media] of Object.entries(((op.requestBody as Json | undefined)?.content ?? {}) as Record<string, Json>)) {
          if (!/^application\/(.+\+)?json$/.test(mediaType) && isObject(media.schema) && media.schema.type === undefined && media.schema.$ref === undefined)
            media.schema = { type: 'string', format: 'binary', ...media.schema }
        }
        for (const [status, response] of Object.entries((op.responses ?? {}) as Record<string, Json>)) {
          if (response.description === 'Default Response') response.description = STATUS_CODES[status] ?? 'Response'
          // Every limit the kit applies (@fastify/rate-limit, the login throttle, POST /tenants per hour, the tenant
          // plan's) answers 429 with Retry-After; tenant routes already document it with the RateLimit-* headers.
          if (status === '429' && !(isObject(response.headers) && 'retry-after' in response.headers))
            response.headers = { ...(isObject(response.headers) ? response.headers : {}), 'retry-after': RetryAfterHeader }
        }
      }
    }
    optionalBodies.clear()
    return doc
  }
}
