/**
 * The application as a Fastify plugin (the fastify/demo layout, registered explicitly so this one
 * file shows the whole architecture in load order):
 *   1. core/plugins/external: third-party plugins, one file each;
 *   2. core/plugins: the core's services as decorators (host DB, services, identity, tenancy), then each
 *      feature's plugins (src/features/index.ts, in list order);
 *   3. routes: each feature's, at its prefix; tenant-scoped ones inside the guarded /api scope.
 * Tests register this plugin; src/server.ts adds the HTTP listener around it.
 */
import type { FastifyInstance, FastifyPluginAsync, FastifyServerOptions } from 'fastify'
import type { AppOptions, Config } from './core/config.js'
import { createValidatorCompiler } from './core/lib/validation.js'
import identity from './core/identity/plugin.js'
import errors, { clientErrorHandler, frameworkErrors } from './core/plugins/errors.js'
import hostDb from './core/plugins/host-db.js'
import metrics from './core/plugins/metrics.js'
import requestDeadline from './core/plugins/request-deadline.js'
import requestId from './core/plugins/request-id.js'
import { requestIdGenerator } from './core/lib/request-context.js'
import services from './core/plugins/services.js'
import session from './core/plugins/session.js'
import tenancy from './core/plugins/tenancy.js'
import cookie from './core/plugins/external/cookie.js'
import csrf from './core/plugins/external/csrf.js'
import helmet from './core/plugins/external/helmet.js'
import rateLimit from './core/plugins/external/rate-limit.js'
import redis from './core/plugins/external/redis.js'
import swagger from './core/plugins/external/swagger.js'
import underPressure from './core/plugins/external/under-pressure.js'
import apiRoutes from './core/routes/api.js'
import type { Feature, FeatureRoute } from './core/feature.js'
import { FEATURES } from './features/index.js'
import healthRoutes from './core/routes/health.js'


/** Server options that belong to the app (tests and server.ts both use them). */
export function serverOptions(config: Config): FastifyServerOptions {
  return {
    trustProxy: config.trustProxy,
    // x-request-id is taken only from a trusted proxy, and only when well-formed (request-context.ts).
    requestIdHeader: false,
    genReqId: requestIdGenerator(config.trustProxy),
    // Cap bodies at 1 MiB: nothing in this API needs more, and it bounds parser work.
    bodyLimit: 1024 * 1024,
    routerOptions: { ignoreTrailingSlash: true, maxParamLength: 200 },
    // Errors raised before routing (bad percent-encoding, over-long parameters, unparsable HTTP) get the
    // same { statusCode, error, message, code } body as everything else.
    frameworkErrors,
    clientErrorHandler,
  }
}

export default async function app(fastify: FastifyInstance, opts: AppOptions) {
  fastify.setValidatorCompiler(createValidatorCompiler())
  // The API speaks JSON only: a text/plain body is an unsupported media type (415), not a string the schema refuses.
  fastify.removeContentTypeParser('text/plain')

  // First, so its clock starts before any other hook runs (session and rate-limit lookups in Redis).
  await fastify.register(requestDeadline, opts)
  await fastify.register(requestId)
  // Before anything that costs work (Redis lookups, sessions): an overloaded process sheds at the door.
  await fastify.register(underPressure, opts)

  // 1. external
  await fastify.register(redis, opts)
  await fastify.register(helmet)
  await fastify.register(rateLimit, opts)
  await fastify.register(swagger, opts)
  await fastify.register(cookie, opts)

  // 2. core services as decorators (host DB, services, who is calling, the tenant guard), then the features' own
  await fastify.register(errors)
  await fastify.register(metrics, opts)
  await fastify.register(hostDb, opts)
  const features: readonly Feature[] = FEATURES
  await fastify.register(services, { ...opts, features })
  // Sessions cache what they read and drop it on the process' invalidation bus (in services).
  await fastify.register(session, opts)
  await fastify.register(csrf)
  await fastify.register(identity, opts)
  await fastify.register(tenancy, opts)
  for (const feature of features) for (const plugin of feature.plugins ?? []) await fastify.register(plugin as FastifyPluginAsync<AppOptions>, opts)

  // 3. routes: the features' at their prefix; their tenant routes inside the guarded scope, mounted twice
  const routes: FeatureRoute[] = features.flatMap((f) => f.routes ?? [])
  const mount = (route: FeatureRoute) =>
    fastify.register(route.plugin as FastifyPluginAsync<object>, { ...(route.options?.(fastify, opts) ?? opts), prefix: route.prefix })
  await fastify.register(healthRoutes, { prefix: '/health' })
  for (const route of routes) if (route.scope === 'root') await mount(route)
  const tenantRoutes = routes.filter((r) => r.scope === 'tenant')
  await fastify.register(apiRoutes, { ...opts, routes: tenantRoutes, prefix: '/api' })
  await fastify.register(apiRoutes, { ...opts, routes: tenantRoutes, prefix: '/t/:tenant/api' })
}
