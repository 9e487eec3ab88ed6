/** GET /api/billing/entitlements — what the tenant's plan allows, for any member (a UI shows limits and hides what the plan lacks). */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { EntitlementsSchema, entitlementsJson } from '../entitlements-view.js'

const entitlementsRoutes: FastifyPluginAsyncTypebox = async (fastify) => {
  fastify.get(
    '/entitlements',
    {
      config: { allowSuspended: true },
      schema: { tags: ['billing'], summary: 'The tenant’s plan: where it comes from, its features, tier level and limits', response: { 200: EntitlementsSchema } },
    },
    async (req) => entitlementsJson(await fastify.entitlements.get(req.tenant!.id)),
  )
}

export default entitlementsRoutes
