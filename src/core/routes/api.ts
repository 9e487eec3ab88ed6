/**
 * Every feature's tenant-scoped routes (scope: 'tenant' in its manifest) live under this scope, mounted twice: at /api (tenant from header,
 * subdomain or session) and at /t/:tenant/api (tenant from the path). The guard runs before every
 * route in the scope, so isolation is structural: a handler can't forget it. It runs before
 * validation: 401/404/403 come first, and a caller who may not act learns nothing from a 400.
 */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from 'typebox'
import type { FastifyInstance, FastifyPluginAsync } from 'fastify'
import type { AppOptions } from '../config.js'
import type { FeatureRoute } from '../feature.js'
import { authScope } from '../lib/openapi.js'
import { errorResponses, Uuid } from '../lib/schemas.js'

const TenantView = Type.Object({
  tenant: Type.Object({ id: Uuid, slug: Type.String(), name: Type.String(), status: Type.String(), planTier: Type.String() }),
  role: Type.String(),
  membershipRole: Type.String(),
})

const apiRoutes: FastifyPluginAsyncTypebox<AppOptions & { routes: readonly FeatureRoute[] }> = async (fastify, opts) => {
  fastify.addHook('preValidation', fastify.tenantGuard)
  fastify.addHook('onRoute', authScope('tenant'))

  fastify.get(
    '/tenant',
    { schema: { tags: ['tenants'], summary: 'The resolved tenant and my role in it', response: { 200: TenantView, ...errorResponses(400, 401, 403, 404, 409) } } },
    async (req) => {
      const { id, slug, name, status, planTier } = req.tenant!
      return { tenant: { id, slug, name, status, planTier }, role: req.role!, membershipRole: req.membership!.role }
    },
  )

  const { routes, ...appOpts } = opts
  for (const route of routes) {
    const options = route.options?.(fastify as unknown as FastifyInstance, appOpts) ?? appOpts
    await fastify.register(route.plugin as FastifyPluginAsync<object>, { ...options, prefix: route.prefix })
  }
}

export default apiRoutes
