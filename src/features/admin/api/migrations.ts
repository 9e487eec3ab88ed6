/**
 * /admin/api/migrations — tenant database migrations across the fleet, for platform admins (guard.ts).
 *
 * GET is `npm run tenants -- behind`: the newest tenant migration version this release migrates to and
 * the tenants behind it (or failed, or interrupted), read from the catalog, which records each tenant's
 * version and status (tenancy/fleet.ts): one query, no tenant database opened.
 *
 * POST /fleet is `npm run tenants -- migrate --queue`: one `tenant.migrate` job per tenant behind, run by the
 * worker; each job records its outcome in the catalog, so GET shows the fleet catching up. Job ids are
 * derived from the tenant, the version and its catalog row's last write, so asking twice before anything
 * ran queues nothing new, and a tenant whose migration failed is queued again. Audited with the admin,
 * ip and user agent.
 */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from 'typebox'
import { audit } from '../../../core/lib/audit.js'
import { errorResponses, Uuid } from '../../../core/lib/schemas.js'
import { listBehind } from '../../../core/tenancy/fleet.js'
import { queueFleetMigration } from '../../../core/tenancy/provisioning-jobs.js'
import { MigrationStatusSchema, TenantStatusSchema } from '../jobs.js'
import { StringOrNull, tags } from './schemas.js'

const BehindTenant = Type.Object({
  id: Uuid,
  slug: Type.String(),
  status: TenantStatusSchema,
  migrationVersion: StringOrNull,
  migrationStatus: MigrationStatusSchema,
})

const MigrationsOverview = Type.Object({
  latest: Type.String({ description: 'The tenant migration version this release migrates to' }),
  behindCount: Type.Integer({ description: 'Active and suspended tenants not current on it (behind, failed or running)' }),
  behind: Type.Array(BehindTenant, { description: 'The first `limit` of them, by slug' }),
})

const FleetQueued = Type.Object(
  {
    version: Type.String({ description: 'The version the jobs migrate to' }),
    queuedCount: Type.Integer(),
    queued: Type.Array(Type.Object({ tenantId: Uuid, slug: Type.String(), jobId: Uuid })),
    running: Type.Array(Type.String(), { description: 'Slugs behind whose migration is running right now: not queued again' }),
  },
  { description: 'Follow each job at GET /admin/api/jobs/{jobId}, or the fleet at GET /admin/api/migrations' },
)

const migrationAdminRoutes: FastifyPluginAsyncTypebox = async (fastify) => {
  const { host, tasks, provisioner } = fastify.services
  // The folder the running release migrates tenants from (tests point it at a copy with extra migrations).
  const folder = provisioner.template.folder

  fastify.get(
    '/',
    {
      schema: {
        tags,
        summary: 'The newest tenant migration version and the tenants behind it (from the catalog; no tenant database opened)',
        querystring: Type.Object({ limit: Type.Integer({ minimum: 1, maximum: 1000, default: 200 }) }, { additionalProperties: false }),
        response: { 200: MigrationsOverview, ...errorResponses(400) },
      },
    },
    async (req) => {
      const behind = await listBehind({ host, folder })
      return { latest: provisioner.template.info.version, behindCount: behind.length, behind: behind.slice(0, req.query.limit).map(({ updatedAt: _, ...t }) => t) }
    },
  )

  fastify.post(
    '/fleet',
    {
      schema: {
        tags,
        summary: 'Migrate the fleet in the background: one tenant.migrate job per tenant behind (`tenants migrate --queue`)',
        description: '202 with the jobs queued (none when every tenant is current). 503 QUEUE_UNAVAILABLE when the queue refuses them.',
        response: { 202: FleetQueued, ...errorResponses(400, 503) },
      },
    },
    async (req, reply) => {
      const { version, queued, running } = await queueFleetMigration({ host, tasks, folder })
      await audit(
        host.db,
        { action: 'admin.fleet_migration_queued', actorUserId: req.user!.id, targetType: 'migration', targetId: version, metadata: { version, queued: queued.length, running } },
        req,
      )
      return reply.code(202).send({ version, queuedCount: queued.length, queued, running })
    },
  )
}

export default migrationAdminRoutes
