/**
 * The application as a Fastify plugin (the fastify/demo layout, registered explicitly so this one
 * file shows the whole architecture in load order):
 *   1. plugins/external: third-party plugins, one file each;
 *   2. plugins/app: our services as decorators (host DB, tenancy, auth, …);
 *   3. routes: one folder per area, mounted at its prefix.
 * Tests register this plugin; src/server.ts adds the HTTP listener around it.
 */
import type { FastifyInstance, FastifyServerOptions } from 'fastify'
import type { AppOptions, Config } from './core/config.js'
import { createValidatorCompiler } from './core/lib/validation.js'
import auth from './core/identity/plugin.js'
import billing from './features/billing/plugin.js'
import errors, { clientErrorHandler, frameworkErrors } from './core/plugins/errors.js'
import hostDb from './core/plugins/host-db.js'
import metrics from './core/plugins/metrics.js'
import requestDeadline from './core/plugins/request-deadline.js'
import services from './core/plugins/services.js'
import tenancy from './core/plugins/tenancy.js'
import cookie from './core/plugins/external/cookie.js'
import csrf from './core/plugins/external/csrf.js'
import helmet from './core/plugins/external/helmet.js'
import rateLimit from './core/plugins/external/rate-limit.js'
import redis from './core/plugins/external/redis.js'
import session from './core/plugins/external/session.js'
import swagger from './core/plugins/external/swagger.js'
import adminRoutes from './features/admin/routes.js'
import apiRoutes from './core/routes/api.js'
import authRoutes from './features/auth/routes/auth.js'
import googleRoutes from './features/auth/routes/google.js'
import billingRoutes from './features/billing/routes/billing.js'
import healthRoutes from './core/routes/health.js'
import publicInvitationRoutes from './features/members/routes/public-invitations.js'
import meRoutes from './features/auth/routes/me.js'
import tenantRoutes from './features/tenants/routes.js'
import stripeWebhookRoutes from './features/billing/routes/stripe-webhook.js'


/** Server options that belong to the app (tests and server.ts both use them). */
export function serverOptions(config: Config): FastifyServerOptions {
  return {
    trustProxy: config.trustProxy,
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

  // 1. external
  await fastify.register(redis, opts)
  await fastify.register(helmet)
  await fastify.register(rateLimit, opts)
  await fastify.register(swagger, opts)
  await fastify.register(cookie, opts)
  await fastify.register(session, opts)
  await fastify.register(csrf)

  // 2. app services
  await fastify.register(errors)
  await fastify.register(metrics, opts)
  await fastify.register(hostDb, opts)
  await fastify.register(services, opts)
  await fastify.register(auth, opts)
  await fastify.register(tenancy, opts)
  await fastify.register(billing, opts)

  // 3. routes
  await fastify.register(healthRoutes, { prefix: '/health' })
  await fastify.register(authRoutes, { prefix: '/auth' })
  await fastify.register(googleRoutes, { ...opts, prefix: '/auth/google' })
  await fastify.register(meRoutes, { prefix: '/me' })
  await fastify.register(publicInvitationRoutes, { prefix: '/invitations' })
  await fastify.register(tenantRoutes, { ...opts, prefix: '/tenants' })
  await fastify.register(apiRoutes, { ...opts, prefix: '/api' })
  await fastify.register(apiRoutes, { ...opts, prefix: '/t/:tenant/api' })
  await fastify.register(billingRoutes, { prefix: '/billing', host: fastify.host })
  await fastify.register(stripeWebhookRoutes, {
    prefix: '/webhooks',
    config: opts.config,
    host: fastify.host,
    onBillingEvent: fastify.onBillingEvent,
    followUps: fastify.billingFollowUps,
  })
  await fastify.register(adminRoutes, { ...opts, prefix: '/admin' })
}
