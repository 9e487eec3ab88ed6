/**
 * /api/tenant, the resolved tenant managing itself: admins rename it, owners change its slug (the
 * former one stays an alias for 30 days: core/tenancy/rename.ts) and delete it (soft delete through
 * the lifecycle, billing cancelled first, by the `tenants.delete` job; the body repeats the slug so a
 * stray request can't). People only: an API key may rename, never delete. (GET /api/tenant is the
 * guard's own view, in core/routes/api.ts.)
 */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from 'typebox'
import { audit, auditSource } from '../../core/lib/audit.js'
import { badRequest, forbidden } from '../../core/lib/errors.js'
import { errorResponses, Text, Uuid } from '../../core/lib/schemas.js'
import { movingConflict, openMoveOf } from '../../core/tenancy/lifecycle.js'
import { renameTenant, SLUG_ALIAS_DAYS } from '../../core/tenancy/rename.js'
import { tenantDeleteJobId } from './jobs.js'

const TenantSchema = Type.Object({ id: Uuid, slug: Type.String(), name: Type.String(), status: Type.String(), planTier: Type.String() })
const tags = ['tenants']
const ownersOnly = (what: string) => forbidden('INSUFFICIENT_ROLE', `Only an owner can ${what}`, { requiredRole: 'owner' })

const tenantSelfService: FastifyPluginAsyncTypebox = async (fastify) => {
  fastify.patch(
    '/',
    {
      config: { access: { minRole: 'admin' } },
      schema: {
        tags,
        summary: `Rename the tenant (admins); change its slug (owners: the former slug keeps working for ${SLUG_ALIAS_DAYS} days)`,
        description: '400 INVALID_SLUG / INVALID_NAME; 409 SLUG_TAKEN when another tenant has the slug or keeps it as a former slug.',
        body: Type.Object(
          {
            name: Type.Optional(Text({ minLength: 1, maxLength: 200 })),
            slug: Type.Optional(Type.String({ minLength: 1, maxLength: 63 })),
          },
          { additionalProperties: false, minProperties: 1 },
        ),
        response: { 200: TenantSchema, ...errorResponses(400, 401, 403, 404, 409, 503) },
      },
    },
    async (req) => {
      const tenant = req.tenant!
      if (req.body.slug !== undefined && req.body.slug !== tenant.slug && req.membership!.role !== 'owner')
        throw ownersOnly("change the tenant's slug")
      const row = await renameTenant(fastify.services, tenant.id, req.body, { actorUserId: req.user!.id, origin: req })
      return { id: row.id, slug: row.slug, name: row.name, status: row.status, planTier: row.planTier }
    },
  )

  fastify.delete(
    '/',
    {
      config: { access: { minRole: 'admin' }, sessionOnly: true, allowSuspended: true },
      schema: {
        tags,
        summary: 'Delete the tenant (owners): billing is cancelled, then it is soft deleted, in the background',
        description:
          'The body repeats the slug (400 CONFIRMATION_MISMATCH otherwise). 202 with the job to follow at /api/jobs/:id. ' +
          '409 MOVE_IN_PROGRESS while the tenant moves to another database.',
        body: Type.Object(
          { confirm: Type.String({ minLength: 1, maxLength: 63, description: 'the tenant’s slug' }) },
          { additionalProperties: false },
        ),
        response: {
          202: Type.Object({ status: Type.Literal('deleting'), jobId: Uuid }),
          ...errorResponses(400, 401, 403, 404, 409, 503),
        },
      },
    },
    async (req, reply) => {
      const tenant = req.tenant!
      if (req.membership!.role !== 'owner') throw ownersOnly('delete the tenant')
      if (req.body.confirm !== tenant.slug)
        throw badRequest('CONFIRMATION_MISMATCH', `Send { "confirm": "${tenant.slug}" } to delete this tenant`)
      // Not under a move (the job's lifecycle run checks again under the tenant lock).
      const move = await openMoveOf(fastify.host, tenant.id)
      if (move) throw movingConflict(tenant.slug, 'delete', move)
      const job = await fastify.services.tasks.submit(
        'tenants.delete',
        { tenantId: tenant.id, actorUserId: req.user!.id, origin: auditSource(req) },
        { id: tenantDeleteJobId(tenant.id) },
      )
      await audit(
        fastify.host.db,
        { action: 'tenant.deletion_requested', actorUserId: req.user!.id, tenantId: tenant.id, targetType: 'tenant', targetId: tenant.id },
        req,
      )
      return reply.code(202).send({ status: 'deleting' as const, jobId: job.id })
    },
  )
}

export default tenantSelfService
