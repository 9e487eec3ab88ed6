/**
 * /admin/api/tenants — every tenant of the platform, for platform admins (guard.ts). Search and filters,
 * one tenant in detail (never its database URL), and the lifecycle: suspend, resume, soft delete, restore
 * and hard delete (queued: the `tenants.delete` job), each through provisioner.run, so the steps, the per-tenant lock (409 TENANT_BUSY), the
 * allowed transitions (409 INVALID_TRANSITION) and the audit entry are the lifecycle's own; the entry
 * names the admin, the ip and the user agent. Bulk suspend and resume run as a job (jobs.ts): 202 with its id.
 *
 * Restore brings a soft-deleted tenant back to 'active' with its data (the database was kept). Billing
 * cancelled when it was deleted is not restarted: the owner subscribes again.
 */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from 'typebox'
import type { AppOptions } from '../../../core/config.js'
import { derivedJobId } from '../../../core/jobs/registry.js'
import { audit, auditSource } from '../../../core/lib/audit.js'
import { iso } from '../../../core/lib/dates.js'
import { Email } from '../../../core/identity/schemas.js'
import { badRequest, conflict, notFound } from '../../../core/lib/errors.js'
import { errorResponses, IdParams, Text, Uuid } from '../../../core/lib/schemas.js'
import { type LifecycleEvent, movingConflict, openMoveOf } from '../../../core/tenancy/lifecycle.js'
import { inviteOwner } from '../../members/index.js'
import { type BulkEvent, MAX_BULK_IDS, MigrationStatusSchema, TenantFilterSchema, TenantStatusSchema } from '../jobs.js'
import { Cursor, DateTime, DateTimeOrNull, Limit, page, StringOrNull, tags } from './schemas.js'
import { describeTenant, listTenants, type TenantSummary } from './tenant-queries.js'

const Status = TenantStatusSchema
const MigrationStatus = MigrationStatusSchema

const TenantSummarySchema = Type.Object({
  id: Uuid,
  slug: Type.String(),
  name: Type.String(),
  planTier: Type.String(),
  status: Status,
  migrationVersion: StringOrNull,
  migrationStatus: MigrationStatus,
  ownerEmail: StringOrNull,
  createdAt: DateTime,
  updatedAt: DateTime,
  deletedAt: DateTimeOrNull,
})

const TenantDetailSchema = Type.Intersect([
  TenantSummarySchema,
  Type.Object({
    dbName: Type.String(),
    maxConnections: Type.Union([Type.Integer(), Type.Null()]),
    stripeCustomerId: StringOrNull,
    createdBy: Type.Union([Uuid, Type.Null()]),
    provisionStep: StringOrNull,
    provisionError: StringOrNull,
    membersCount: Type.Integer({ description: 'Active memberships' }),
    migration: Type.Object({
      version: StringOrNull,
      status: MigrationStatus,
      error: StringOrNull,
      migratedAt: DateTimeOrNull,
      latest: Type.String({ description: 'The tenant migration version this release migrates to' }),
      behind: Type.Boolean(),
    }),
    subscription: Type.Union([
      Type.Object({
        id: Uuid,
        status: Type.String(),
        planKey: StringOrNull,
        billingInterval: StringOrNull,
        currentPeriodEnd: DateTimeOrNull,
        cancelAtPeriodEnd: Type.Boolean(),
        canceledAt: DateTimeOrNull,
      }),
      Type.Null(),
    ]),
    databaseSizeBytes: Type.Union([Type.Integer(), Type.Null()], { description: 'pg_database_size; null when the database cannot be reached' }),
  }),
])

const ActionResult = Type.Object({
  id: Uuid,
  status: Type.Union([Status, Type.Null()], { description: 'null once hard deleted' }),
  outcome: Type.Union([Type.Literal('done'), Type.Literal('already_done')], {
    description: 'already_done: the tenant was in that state already (nothing written, no audit entry)',
  }),
})

const CreateBody = Type.Object(
  {
    slug: Text({ minLength: 1, maxLength: 63, description: '3-63 lowercase letters, digits and hyphens; not reserved' }),
    name: Text({ minLength: 1, maxLength: 200 }),
    ownerEmail: Type.Optional({
      ...Email,
      description:
        'The owner: an existing account is made the owner at once; an address with no account is invited as owner (it becomes the owner by ' +
        'accepting). Omitted: no owner yet, as `tenants provision` without --owner',
    }),
  },
  { additionalProperties: false },
)
const CreatedTenant = (description: string) =>
  Type.Object(
    {
      id: Uuid,
      slug: Type.String(),
      name: Type.String(),
      status: TenantStatusSchema,
      ownerUserId: Type.Union([Uuid, Type.Null()]),
      invitedOwner: Type.Union([Type.Object({ invitationId: Uuid, email: Type.String(), expiresAt: DateTime }), Type.Null()], {
        description: 'The owner invitation mailed to an ownerEmail with no account (null otherwise)',
      }),
    },
    { description },
  )

const BulkBody = Type.Object(
  {
    ids: Type.Optional(Type.Array(Uuid, { minItems: 1, maxItems: MAX_BULK_IDS, uniqueItems: true })),
    filter: Type.Optional(TenantFilterSchema),
  },
  { additionalProperties: false, description: 'Exactly one of ids and filter' },
)
const HardDeleteAccepted = Type.Object(
  { id: Uuid, jobId: Uuid, jobType: Type.Literal('tenants.delete') },
  { description: 'The hard delete is queued: follow the job at GET /admin/api/jobs/{jobId}' },
)
/** One hard delete job per tenant: asking twice while it is queued or done queues nothing more. */
const hardDeleteJobId = (tenantId: string) => derivedJobId(tenantId, 'hard-delete')
const BulkAccepted = Type.Object({ id: Uuid, jobType: Type.Literal('admin.tenants.bulk') }, { description: 'Follow it at GET /admin/api/jobs/{id}' })

const summaryJson = (t: TenantSummary) => ({
  ...t,
  createdAt: t.createdAt.toISOString(),
  updatedAt: t.updatedAt.toISOString(),
  deletedAt: iso(t.deletedAt),
})

const errors = errorResponses(400, 404, 409)

const tenantAdminRoutes: FastifyPluginAsyncTypebox<AppOptions> = async (fastify, { config }) => {
  const { provisioner, pools, tasks } = fastify.services
  const db = fastify.host.db

  fastify.get(
    '/',
    {
      schema: {
        tags,
        summary: 'Every tenant, newest first: search (slug, name, owner email), filters, cursor pagination',
        querystring: Type.Object({ ...TenantFilterSchema.properties, limit: Limit, cursor: Type.Optional(Cursor) }, { additionalProperties: false }),
        response: { 200: page(TenantSummarySchema), ...errors },
      },
    },
    async (req) => {
      const result = await listTenants(db, req.query)
      return { items: result.items.map(summaryJson), nextCursor: result.nextCursor }
    },
  )

  fastify.post(
    '/',
    {
      schema: {
        tags,
        summary: 'Provision a tenant (slug, name, owner by email) through the same provisioning as signups and `tenants provision`',
        description:
          'Queued (default): 202 with status "provisioning"; follow it at GET /admin/api/tenants/{id} until "active" (or "failed", ' +
          'then `npm run tenants -- retry <slug>`). With PROVISION_INLINE: 201, already "active". 409 SLUG_TAKEN; 400 INVALID_SLUG; ' +
          'An ownerEmail with no account is invited as owner (an invitation email; accepting it makes them the owner). ' +
          '404 OWNER_NOT_FOUND (a deleted account) / 409 OWNER_DISABLED; 503 QUEUE_UNAVAILABLE (the tenant is marked failed). ' +
          'No per-user tenant quota applies.',
        body: CreateBody,
        response: {
          201: CreatedTenant('Provisioned in the request (PROVISION_INLINE): active'),
          202: CreatedTenant('Registered; the job queue is setting it up (status "provisioning")'),
          ...errorResponses(400, 404, 409, 503),
        },
      },
    },
    async (req, reply) => {
      const { slug, name, ownerEmail } = req.body
      const owner = ownerEmail === undefined ? undefined : await fastify.users.findByEmail(ownerEmail)
      if (owner?.deletedAt) throw notFound('OWNER_NOT_FOUND', `the account ${ownerEmail} was deleted`)
      if (owner?.disabledAt) throw conflict('OWNER_DISABLED', `the account ${ownerEmail} is disabled`)
      // tenant.created is written by the registration, in its transaction, with the admin, ip and user agent.
      const tenant = await fastify.tenancy.createTenant({ slug, name, ownerUserId: owner?.id, actorUserId: req.user!.id, origin: auditSource(req) })
      let invitedOwner = null
      if (ownerEmail !== undefined && !owner) {
        const admin = req.user!
        const invitation = await inviteOwner(
          { host: db, tasks, config },
          { tenantId: tenant.id, tenantName: tenant.name, email: ownerEmail, invitedBy: admin.id, inviterName: admin.name ?? admin.email },
          req,
        )
        invitedOwner = { invitationId: invitation.id, email: invitation.email, expiresAt: invitation.expiresAt.toISOString() }
      }
      return reply
        .code(tenant.status === 'active' ? 201 : 202)
        .send({ id: tenant.id, slug: tenant.slug, name: tenant.name, status: tenant.status, ownerUserId: owner?.id ?? null, invitedOwner })
    },
  )

  fastify.get(
    '/:id',
    { schema: { tags, summary: 'One tenant: catalog row (no database URL), members, subscription, migration, database size', params: IdParams, response: { 200: TenantDetailSchema, ...errors } } },
    async (req) => {
      const row = await provisioner.writes.get(req.params.id)
      const d = await describeTenant(db, row, { pools, dbUrl: provisioner.writes.dbUrl })
      const latest = provisioner.template.info.version
      return {
        ...summaryJson({ ...row, ownerEmail: d.ownerEmail }),
        dbName: row.dbName,
        maxConnections: row.maxConnections,
        stripeCustomerId: row.stripeCustomerId,
        createdBy: row.createdBy,
        provisionStep: row.provisionStep,
        provisionError: row.provisionError,
        membersCount: d.membersCount,
        migration: {
          version: row.migrationVersion,
          status: row.migrationStatus,
          error: row.migrationError,
          migratedAt: iso(row.migratedAt),
          latest,
          behind: row.migrationVersion !== latest,
        },
        subscription: d.subscription && { ...d.subscription, currentPeriodEnd: iso(d.subscription.currentPeriodEnd), canceledAt: iso(d.subscription.canceledAt) },
        databaseSizeBytes: d.databaseSizeBytes,
      }
    },
  )

  const action = (verb: string, event: LifecycleEvent, summary: string) =>
    fastify.post(
      `/:id/${verb}`,
      { schema: { tags, summary, params: IdParams, response: { 200: ActionResult, ...errors } } },
      async (req) => {
        const outcome = await provisioner.run(event, req.params.id, { actorUserId: req.user!.id, origin: auditSource(req) })
        const row = await provisioner.writes.get(req.params.id)
        return { id: row.id, status: row.status, outcome }
      },
    )
  action('suspend', 'suspended', 'Suspend a tenant (its members get 403 TENANT_SUSPENDED; pools closed)')
  action('resume', 'resumed', 'Resume a suspended tenant')
  action('restore', 'restored', 'Restore a soft-deleted tenant (active again; billing cancelled at deletion is not restarted)')

  fastify.delete(
    '/:id',
    {
      schema: {
        tags,
        summary: 'Delete a tenant: soft (kept, restorable) at once, or with ?hard=true its database dropped and catalog row removed by a job',
        description:
          'Soft: 200 with the outcome. Hard: 202 with the id of the `tenants.delete` job (lifecycle hardDeleted; follow it at ' +
          'GET /admin/api/jobs/{id}): DROP DATABASE forces a cluster-wide checkpoint, so it never runs in the request. Asking twice ' +
          'queues one job; a job that failed is run again with POST /admin/api/jobs/retry. 409 MOVE_IN_PROGRESS while the tenant ' +
          'moves (soft or hard; the job checks again and waits for the move by retrying).',
        params: IdParams,
        querystring: Type.Object({ hard: Type.Boolean({ default: false }) }, { additionalProperties: false }),
        response: { 200: ActionResult, 202: HardDeleteAccepted, ...errors },
      },
    },
    async (req, reply) => {
      const { id } = await provisioner.writes.get(req.params.id)
      const origin = auditSource(req)
      if (!req.query.hard) {
        const outcome = await provisioner.run('softDeleted', id, { actorUserId: req.user!.id, origin })
        return { id, status: (await provisioner.writes.get(id)).status, outcome }
      }
      // Every status may be hard deleted (lifecycle.ts), but not while the tenant moves: the job would be
      // refused (and retried) anyway; say so now. The job's lifecycle run checks again under the tenant
      // lock and writes the tenant.hard_deleted entry; this one records who asked, when.
      const move = await openMoveOf(fastify.host, id)
      if (move) throw movingConflict((await provisioner.writes.get(id)).slug, 'hard delete', move)
      const job = await tasks.submit('tenants.delete', { tenantId: id, actorUserId: req.user!.id, hard: true, origin }, { id: hardDeleteJobId(id) })
      await audit(
        db,
        { action: 'admin.tenant_hard_delete_requested', actorUserId: req.user!.id, tenantId: id, targetType: 'tenant', targetId: id, metadata: { jobId: job.id } },
        req,
      )
      return reply.code(202).send({ id, jobId: job.id, jobType: 'tenants.delete' as const })
    },
  )

  const bulk = (verb: string, event: BulkEvent, summary: string) =>
    fastify.post(
      `/${verb}`,
      { schema: { tags, summary, body: BulkBody, response: { 202: BulkAccepted, ...errors } } },
      async (req, reply) => {
        const { ids, filter } = req.body
        if ((ids === undefined) === (filter === undefined)) throw badRequest('IDS_OR_FILTER', 'Give exactly one of ids and filter')
        const origin = auditSource(req)
        const payload = { event, actorUserId: req.user!.id, origin, ...(ids ? { ids } : { filter }) }
        const job = await tasks.submit('admin.tenants.bulk', payload)
        await audit(
          db,
          { action: `admin.tenants_bulk_${event}`, actorUserId: req.user!.id, targetType: 'job', targetId: job.id, metadata: { ids: ids?.length, filter } },
          req,
        )
        return reply.code(202).send({ id: job.id, jobType: 'admin.tenants.bulk' as const })
      },
    )
  bulk('bulk-suspend', 'suspended', 'Suspend many tenants (by ids, or every active tenant a filter selects) in a background job')
  bulk('bulk-resume', 'resumed', 'Resume many tenants (by ids, or every suspended tenant a filter selects) in a background job')
}

export default tenantAdminRoutes
