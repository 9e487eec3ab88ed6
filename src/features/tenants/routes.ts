/**
 * The caller's tenants, and creating a new one (the creator becomes its owner). Each tenant is a
 * database, so creation is bounded per user: at most MAX_TENANTS_PER_USER created and not deleted
 * (403 TENANT_QUOTA_EXCEEDED, counted in the registering transaction), and TENANT_CREATES_PER_HOUR
 * (429 RATE_LIMITED, counted in Redis across instances) on top of the per-IP limit.
 */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { FastifyRequest } from 'fastify'
import { Type } from 'typebox'
import type { AppOptions } from '../../core/config.js'
import { MembershipSchema } from '../../core/identity/schemas.js'
import { authScope } from '../../core/lib/openapi.js'
import { errorResponses, Text, Uuid } from '../../core/lib/schemas.js'

const CreateTenantBody = Type.Object(
  {
    name: Text({ minLength: 1, maxLength: 100 }),
    slug: Text({ minLength: 1, maxLength: 63 }),
  },
  { additionalProperties: false },
)

const CreatedTenant = (description: string) =>
  Type.Object(
    {
      id: Uuid,
      slug: Type.String(),
      name: Type.String(),
      status: Type.String({ description: "'provisioning' until the queue has set the tenant up, then 'active' (see GET /me)" }),
      role: Type.Literal('owner'),
    },
    { description },
  )

const tenantRoutes: FastifyPluginAsyncTypebox<AppOptions> = async (fastify, { config }) => {
  const { tenancy } = fastify
  const perUser = fastify.extraRateLimit({
    max: config.tenantQuota.createsPerHour,
    timeWindow: '1 hour',
    keyGenerator: (req: FastifyRequest) => `tenant-create:${req.user!.id}`,
  })
  fastify.addHook('preValidation', fastify.requireUser)
  fastify.addHook('onRoute', authScope('session'))

  fastify.get('/', { schema: { tags: ['tenants'], summary: 'Tenants I belong to', response: { 200: Type.Object({ items: Type.Array(MembershipSchema) }), ...errorResponses(401) } } }, async (req) => ({
    items: await tenancy.memberships.listForUser(req.user!.id),
  }))

  fastify.post(
    '/',
    {
      config: { rateLimit: { max: 10, timeWindow: '1 minute' } },
      preHandler: perUser,
      schema: {
        tags: ['tenants'],
        summary: 'Create a tenant (the caller becomes its owner)',
        description:
          'The tenant is registered at once and set up by the job queue: 202 with status "provisioning" (poll GET /me until its ' +
          'tenantStatus is "active"; tenant routes answer 409 TENANT_NOT_READY until then). With PROVISION_INLINE, or when it is a shared tenant (rows, ' +
          'not a database), it is set up within the request: 201 with status "active". 503 QUEUE_UNAVAILABLE when the queue is down (the tenant is marked failed). ' +
          '403 TENANT_QUOTA_EXCEEDED past MAX_TENANTS_PER_USER tenants created and not deleted; 429 RATE_LIMITED past TENANT_CREATES_PER_HOUR.',
        body: CreateTenantBody,
        response: {
          201: CreatedTenant('Created and already active (PROVISION_INLINE)'),
          202: CreatedTenant('Registered; the job queue is setting it up (status "provisioning")'),
          ...errorResponses(400, 401, 403, 409, 429, 503),
        },
      },
    },
    async (req, reply) => {
      const user = req.user!
      const tenant = await tenancy.createTenant({
        slug: req.body.slug,
        name: req.body.name,
        ownerUserId: user.id,
        maxCreatedByOwner: config.tenantQuota.maxPerUser,
        origin: { ip: req.ip, userAgent: req.headers['user-agent'] },
      })
      return reply
        .code(tenant.status === 'active' ? 201 : 202)
        .send({ id: tenant.id, slug: tenant.slug, name: tenant.name, status: tenant.status, role: 'owner' as const })
    },
  )
}

export default tenantRoutes
