/** The caller's tenants, and creating a new one (the creator becomes its owner). */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from 'typebox'
import { MembershipSchema } from '../../auth/schemas.js'
import { errorResponses, Text, Uuid } from '../../lib/schemas.js'

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

const tenantRoutes: FastifyPluginAsyncTypebox = async (fastify) => {
  const { tenancy } = fastify
  fastify.addHook('preHandler', fastify.requireUser)

  fastify.get('/', { schema: { tags: ['tenants'], summary: 'Tenants I belong to', response: { 200: Type.Object({ items: Type.Array(MembershipSchema) }), ...errorResponses(401) } } }, async (req) => ({
    items: await tenancy.memberships.listForUser(req.user!.id),
  }))

  fastify.post(
    '/',
    {
      config: { rateLimit: { max: 10, timeWindow: '1 minute' } },
      schema: {
        tags: ['tenants'],
        summary: 'Create a tenant (the caller becomes its owner)',
        description:
          'The tenant is registered at once and set up by the job queue: 202 with status "provisioning" (poll GET /me until its ' +
          'tenantStatus is "active"; tenant routes answer 409 TENANT_NOT_READY until then). With PROVISION_INLINE it is set up ' +
          'within the request: 201 with status "active". 503 QUEUE_UNAVAILABLE when the queue is down (the tenant is marked failed).',
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
        origin: { ip: req.ip, userAgent: req.headers['user-agent'] },
      })
      return reply
        .code(tenant.status === 'active' ? 201 : 202)
        .send({ id: tenant.id, slug: tenant.slug, name: tenant.name, status: tenant.status, role: 'owner' as const })
    },
  )
}

export default tenantRoutes
