/**
 * POST /admin/api/tenants/:id/move — move a tenant to the other isolation mode (src/core/tenancy/move), for
 * platform admins (guard.ts): the move is recorded and run by the `tenants.move` job, so the answer is 202
 * with the move's and the job's ids (follow it at GET /admin/api/jobs/{jobId}). Asking again for the same
 * target while it runs answers the same move; another target is 409 MOVE_IN_PROGRESS. Audited with the
 * admin, ip and user agent (tenant.move_requested, then tenant.moved when it is done).
 */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from 'typebox'
import { audit, auditSource } from '../../../core/lib/audit.js'
import { errorResponses, IdParams, Uuid } from '../../../core/lib/schemas.js'
import { tags } from './schemas.js'

const MoveBody = Type.Object(
  {
    isolation: Type.Union([Type.Literal('shared'), Type.Literal('database')], {
      description: "Where the tenant's data goes: the shared database (row-level security) or a database of its own",
    }),
    server: Type.Optional(
      Type.String({
        pattern: '^[a-z0-9][a-z0-9_-]{0,62}$',
        description:
          'The database server (core_db_servers): where a database of its own is made, or whose shared database takes the rows; omitted: ' +
          "placement's choice (a tenant already in that mode stays on its server). 400 UNKNOWN_SERVER, 400 INVALID_SERVER (no shared database there), 409 SERVER_DRAINING",
      }),
    ),
  },
  { additionalProperties: false },
)

const MoveAccepted = Type.Object(
  { id: Uuid, moveId: Uuid, jobId: Uuid, jobType: Type.Literal('tenants.move') },
  { description: 'The move is queued: writes to the tenant are refused (503 TENANT_MOVING) for the short while it copies and verifies' },
)

const tenantMoveRoutes: FastifyPluginAsyncTypebox = async (fastify) => {
  const { mover, provisioner } = fastify.services

  fastify.post(
    '/:id/move',
    {
      schema: {
        tags,
        summary: 'Move a tenant to shared or database isolation, in a background job (writes paused briefly, rows verified)',
        params: IdParams,
        body: MoveBody,
        response: { 202: MoveAccepted, ...errorResponses(400, 404, 409) },
      },
    },
    async (req, reply) => {
      const { id } = await provisioner.writes.get(req.params.id)
      const queued = await mover.queue(id, {
        target: { isolation: req.body.isolation, server: req.body.server },
        requestedBy: req.user!.id,
        origin: auditSource(req),
      })
      await audit(
        fastify.host.db,
        {
          action: 'admin.tenant_move_requested',
          actorUserId: req.user!.id,
          tenantId: id,
          targetType: 'tenant',
          targetId: id,
          metadata: { moveId: queued.moveId, jobId: queued.jobId, isolation: req.body.isolation, server: req.body.server ?? null },
        },
        req,
      )
      return reply.code(202).send({ id, moveId: queued.moveId, jobId: queued.jobId, jobType: 'tenants.move' as const })
    },
  )
}

export default tenantMoveRoutes
