/**
 * Everything tenant-scoped lives under this scope, mounted twice: at /api (tenant from header,
 * subdomain or session) and at /t/:tenant/api (tenant from the path). The guard runs before every
 * route in the scope, so isolation is structural: a handler can't forget it. It runs before
 * validation: 401/404/403 come first, and a caller who may not act learns nothing from a 400.
 */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from 'typebox'
import type { AppOptions } from '../config.js'
import { authScope } from '../lib/openapi.js'
import { errorResponses, Uuid } from '../lib/schemas.js'
import apiKeyRoutes from '../../features/api-keys/routes.js'
import billingRoutes from '../../features/billing/routes/tenant-billing.js'
import invitationRoutes from '../../features/members/routes/invitations.js'
import jobRoutes from '../../features/jobs/routes.js'
import memberRoutes from '../../features/members/routes/members.js'
import ownershipOfferRoutes from '../../features/members/routes/ownership-offers.js'
import projectRoutes from '../../features/projects/routes.js'

const TenantView = Type.Object({
  tenant: Type.Object({ id: Uuid, slug: Type.String(), name: Type.String(), status: Type.String(), planTier: Type.String() }),
  role: Type.String(),
  membershipRole: Type.String(),
})

const apiRoutes: FastifyPluginAsyncTypebox<AppOptions> = async (fastify, opts) => {
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

  await fastify.register(projectRoutes, { prefix: '/projects' })
  await fastify.register(memberRoutes, { config: opts.config, prefix: '/members' })
  await fastify.register(invitationRoutes, { config: opts.config, prefix: '/invitations' })
  await fastify.register(ownershipOfferRoutes, { prefix: '/ownership-offers' })
  await fastify.register(jobRoutes, { prefix: '/jobs' })
  await fastify.register(billingRoutes, { prefix: '/billing' })
  await fastify.register(apiKeyRoutes, { prefix: '/api-keys' })
}

export default apiRoutes
