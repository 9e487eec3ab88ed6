/** The caller's tenants, and creating a new one (the creator becomes its owner). */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from 'typebox'
import { MembershipSchema } from '../../auth/schemas.js'
import { audit } from '../../lib/audit.js'
import { errorResponses } from '../../lib/schemas.js'

const CreateTenantBody = Type.Object(
  {
    name: Type.String({ minLength: 1, maxLength: 100 }),
    slug: Type.String({ minLength: 1, maxLength: 63 }),
  },
  { additionalProperties: false },
)

const CreatedTenant = Type.Object({
  id: Type.String({ format: 'uuid' }),
  slug: Type.String(),
  name: Type.String(),
  status: Type.String(),
  role: Type.Literal('owner'),
})

const tenantRoutes: FastifyPluginAsyncTypebox = async (fastify) => {
  const { tenancy, host } = fastify
  fastify.addHook('preHandler', fastify.requireUser)

  fastify.get('/', { schema: { tags: ['tenants'], summary: 'Tenants I belong to', response: { 200: Type.Object({ items: Type.Array(MembershipSchema) }), ...errorResponses(401) } } }, async (req) => ({
    items: await tenancy.memberships.listForUser(req.user!.id),
  }))

  fastify.post(
    '/',
    {
      config: { rateLimit: { max: 10, timeWindow: '1 minute' } },
      schema: { tags: ['tenants'], summary: 'Create a tenant; provisioning runs and the response says its status', body: CreateTenantBody, response: { 201: CreatedTenant, ...errorResponses(400, 401, 403, 409, 429) } },
    },
    async (req, reply) => {
      const user = req.user!
      const tenant = await tenancy.provisioner.provision({ slug: req.body.slug, name: req.body.name, ownerUserId: user.id })
      await audit(host.db, { action: 'tenant.created', actorUserId: user.id, tenantId: tenant.id, targetType: 'tenant', targetId: tenant.id }, req)
      return reply.code(201).send({ id: tenant.id, slug: tenant.slug, name: tenant.name, status: tenant.status, role: 'owner' as const })
    },
  )
}

export default tenantRoutes
