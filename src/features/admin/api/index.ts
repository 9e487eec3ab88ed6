/**
 * /admin/api — the JSON admin API, one guarded scope: the platform-admin guard (session or platform API key,
 * guard.ts) runs in preValidation before every route registered below, and every route's document names
 * that auth and the guard's 401/403. A route file added here is guarded by being here; none installs the
 * guard itself.
 */
import type { FastifyPluginAsync } from 'fastify'
import type { AppOptions } from '../../../core/config.js'
import { platformAdminGuard, platformAdminScope } from '../guard.js'
import adminApiKeyRoutes from './api-keys.js'
import auditLogRoutes from './audit-logs.js'
import jobAdminRoutes from './jobs.js'
import migrationAdminRoutes from './migrations.js'
import serverAdminRoutes from './servers.js'
import tenantMoveRoutes from './tenant-move.js'
import tenantPlanRoutes from './tenant-plan.js'
import tenantAdminRoutes from './tenants.js'
import userAdminRoutes from './users.js'

const adminApiRoutes: FastifyPluginAsync<AppOptions> = async (fastify, opts) => {
  fastify.addHook('preValidation', platformAdminGuard(fastify, opts.config))
  fastify.addHook('onRoute', platformAdminScope)
  await fastify.register(tenantAdminRoutes, { ...opts, prefix: '/tenants' })
  await fastify.register(tenantPlanRoutes, { ...opts, prefix: '/tenants' })
  await fastify.register(tenantMoveRoutes, { ...opts, prefix: '/tenants' })
  await fastify.register(userAdminRoutes, { ...opts, prefix: '/users' })
  await fastify.register(auditLogRoutes, { ...opts, prefix: '/audit-logs' })
  await fastify.register(jobAdminRoutes, { ...opts, prefix: '/jobs' })
  await fastify.register(migrationAdminRoutes, { ...opts, prefix: '/migrations' })
  await fastify.register(adminApiKeyRoutes, { ...opts, prefix: '/api-keys' })
  await fastify.register(serverAdminRoutes, { ...opts, prefix: '/servers' })
}

export default adminApiRoutes
