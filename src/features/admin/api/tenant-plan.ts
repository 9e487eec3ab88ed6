/**
 * POST /admin/api/tenants/:id/plan — comp a tenant a plan (or withdraw it with `planKey: null`), for
 * platform admins (guard.ts): it applies when the tenant has no counting subscription, until `expiresAt`
 * if given (src/features/billing/entitlements.ts). Audited with the admin, ip and user agent; every
 * process drops the tenant's cached entitlements at once.
 */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from 'typebox'
import { auditSource } from '../../../core/lib/audit.js'
import { iso } from '../../../core/lib/dates.js'
import { errorResponses, IdParams, Uuid } from '../../../core/lib/schemas.js'
import { compPlan, EntitlementsSchema, entitlementsJson } from '../../billing/index.js'
import { DateTime, DateTimeOrNull, StringOrNull, tags } from './schemas.js'

const CompBody = Type.Object(
  {
    planKey: Type.Union([Type.String({ pattern: '^[a-z][a-z0-9_-]{0,62}$' }), Type.Null()], { description: 'A plan key (GET /billing/plans), or null to withdraw the comp' }),
    expiresAt: Type.Optional(Type.Union([DateTime, Type.Null()], { description: 'When the comp ends (default: until withdrawn)' })),
  },
  { additionalProperties: false },
)

const CompResult = Type.Object({
  tenantId: Uuid,
  compPlanKey: StringOrNull,
  compExpiresAt: DateTimeOrNull,
  entitlements: EntitlementsSchema,
})

const tenantPlanRoutes: FastifyPluginAsyncTypebox = async (fastify) => {

  fastify.post(
    '/:id/plan',
    {
      schema: {
        tags,
        summary: 'Comp a tenant a plan (optionally until expiresAt), or withdraw it with planKey null; a subscription outranks it',
        params: IdParams,
        body: CompBody,
        response: { 200: CompResult, ...errorResponses(400, 404) },
      },
    },
    async (req) => {
      const { id } = req.params
      const { planKey, expiresAt } = req.body
      const result = await compPlan(
        fastify.host.db,
        { tenantId: id, planKey, expiresAt: expiresAt ? new Date(expiresAt) : null, actorUserId: req.user!.id },
        auditSource(req),
      )
      await fastify.entitlements.invalidate(id)
      return {
        tenantId: id,
        compPlanKey: result.planKey,
        compExpiresAt: iso(result.expiresAt),
        entitlements: entitlementsJson(await fastify.entitlements.get(id)),
      }
    },
  )
}

export default tenantPlanRoutes
