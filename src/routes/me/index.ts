/** The caller: who they are, where they belong, and which tenant the session is working in. */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from 'typebox'
import { MembershipSchema, UserSchema } from '../../auth/schemas.js'
import { audit } from '../../lib/audit.js'
import { notFound } from '../../lib/errors.js'
import { errorResponses, Text } from '../../lib/schemas.js'

const Me = Type.Object({
  user: UserSchema,
  memberships: Type.Array(MembershipSchema),
  activeTenant: Type.Union([MembershipSchema, Type.Null()]),
})

const meRoutes: FastifyPluginAsyncTypebox = async (fastify) => {
  const { tenancy, host } = fastify
  fastify.addHook('preHandler', fastify.requireUser)

  fastify.get('/', { schema: { tags: ['me'], summary: 'The current user, memberships and active tenant', response: { 200: Me, ...errorResponses(401) } } }, async (req) => {
    const user = req.user!
    const memberships = await tenancy.memberships.listForUser(user.id)
    const active = memberships.find((m) => m.tenantId === req.session.activeTenantId && m.status === 'active') ?? null
    return { user, memberships, activeTenant: active }
  })

  fastify.put(
    '/active-tenant',
    {
      schema: {
        tags: ['me'],
        summary: 'Switch the session to another tenant the user belongs to',
        body: Type.Object(
          { tenant: Text({ minLength: 1, maxLength: 63, description: 'tenant slug or id' }) },
          { additionalProperties: false },
        ),
        response: { 200: Type.Object({ activeTenant: MembershipSchema }), ...errorResponses(400, 401, 403, 404) },
      },
    },
    async (req) => {
      const user = req.user!
      const ref = req.body.tenant.toLowerCase()
      const memberships = await tenancy.memberships.listForUser(user.id)
      const target = memberships.find((m) => (m.slug === ref || m.tenantId === ref) && m.status === 'active')
      // Not a member and no such tenant look the same: no existence leak.
      if (!target) throw notFound('TENANT_NOT_FOUND', 'No such tenant')
      req.session.activeTenantId = target.tenantId
      await audit(host.db, { action: 'auth.tenant_switch', actorUserId: user.id, tenantId: target.tenantId }, req)
      return { activeTenant: target }
    },
  )
}

export default meRoutes
