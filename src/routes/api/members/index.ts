/**
 * /api/members — who belongs to the resolved tenant, and managing them. Viewers list; admins add
 * existing users, change roles and per-user permissions, and remove members; any member may remove
 * themself. Only an owner grants or revokes ownership, and the last owner can never be demoted or
 * removed (memberships.setRole/remove check it under a row lock → 403 LAST_OWNER).
 *
 * A membership change touches two databases: the host membership and the tenant user. The tenant
 * transaction wraps the host write, so a refused host write (LAST_OWNER, ALREADY_MEMBER) rolls the
 * tenant side back too. Every change is audited and drops the cached membership.
 */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { FastifyRequest } from 'fastify'
import { Type } from 'typebox'
import { audit } from '../../../lib/audit.js'
import { forbidden, notFound } from '../../../lib/errors.js'
import { errorResponses } from '../../../lib/schemas.js'
import { createMembersRepository, type MemberView } from '../../../members/repository.js'
import {
  AddMemberBody,
  ListMembersQuery,
  MemberPageSchema,
  MemberSchema,
  PermissionBody,
  PermissionParams,
  PermissionResult,
  UpdateMemberBody,
  UserIdParams,
} from '../../../members/schemas.js'
import { hasMinRole } from '../../../tenancy/rbac.js'

const tags = ['members']
const guarded = errorResponses(400, 401, 403, 404, 409, 503)
const memberNotFound = () => notFound('MEMBER_NOT_FOUND', 'No such member in this tenant')
const ownersOnly = () => forbidden('INSUFFICIENT_ROLE', 'Only an owner can grant or revoke ownership', { requiredRole: 'owner' })

const memberRoutes: FastifyPluginAsyncTypebox = async (fastify) => {
  const { host, tenancy, users } = fastify
  const repo = (req: FastifyRequest) => createMembersRepository({ host: host.db, tenantDb: req.tenantDb, tenantId: req.tenant!.id })
  const record = (req: FastifyRequest, action: string, targetId: string, metadata: Record<string, unknown>) =>
    audit(host.db, { action, actorUserId: req.user!.id, tenantId: req.tenant!.id, targetType: 'user', targetId, metadata }, req)
  const mustView = async (req: FastifyRequest, userId: string): Promise<MemberView> => {
    const view = await repo(req).view(userId)
    if (!view) throw memberNotFound()
    return view
  }

  fastify.get(
    '/',
    {
      config: { access: { minRole: 'viewer' } },
      schema: {
        tags,
        summary: 'Members of the tenant with their roles and permissions',
        querystring: ListMembersQuery,
        response: { 200: MemberPageSchema, ...guarded },
      },
    },
    async (req) => repo(req).list(req.query),
  )

  fastify.post(
    '/',
    {
      config: { access: { minRole: 'admin' } },
      schema: { tags, summary: 'Add an existing user by email', body: AddMemberBody, response: { 201: MemberSchema, ...guarded } },
    },
    async (req, reply) => {
      const tenantId = req.tenant!.id
      const { email, role } = req.body
      const user = await users.findByEmail(email)
      if (!user) throw notFound('USER_NOT_FOUND', 'No user with this email')
      const localRole = req.body.localRole ?? (role === 'admin' ? 'admin' : 'viewer')
      const members = repo(req)
      await req.tenantDb.transaction(async (tx) => {
        // A re-added user's old tenant row (if any) is reset to the role given now.
        await members.ensureTenantUser(tx, user, localRole, true)
        await tenancy.memberships.add(user.id, tenantId, role) // 409 ALREADY_MEMBER rolls the tenant side back
      })
      // Again after the tenant commit: a request between add()'s invalidation and the commit may have cached the old local role.
      await tenancy.memberships.invalidate(user.id, tenantId)
      await record(req, 'member.added', user.id, { role, localRole })
      return reply.code(201).send(await mustView(req, user.id))
    },
  )

  fastify.patch(
    '/:userId',
    {
      config: { access: { minRole: 'admin' } },
      schema: {
        tags,
        summary: "Change a member's role and/or local role",
        params: UserIdParams,
        body: UpdateMemberBody,
        response: { 200: MemberSchema, ...guarded },
      },
    },
    async (req) => {
      const tenantId = req.tenant!.id
      const { userId } = req.params
      const { role, localRole } = req.body
      const members = repo(req)
      const target = await members.find(userId)
      if (!target) throw memberNotFound()
      const ownershipChanges = role !== undefined && (role === 'owner') !== (target.role === 'owner')
      if (ownershipChanges && req.membership!.role !== 'owner') throw ownersOnly()

      await req.tenantDb.transaction(async (tx) => {
        if (localRole) await members.ensureTenantUser(tx, { id: userId, email: target.email, name: target.name }, localRole, true)
        if (role && role !== target.role) await tenancy.memberships.setRole(userId, tenantId, role) // 403 LAST_OWNER
      })
      await tenancy.memberships.invalidate(userId, tenantId)
      await record(req, 'member.updated', userId, { from: { role: target.role }, to: { role, localRole } })
      return mustView(req, userId)
    },
  )

  fastify.delete(
    '/:userId',
    {
      // Viewers reach the handler so that any member can leave; removing someone else needs admin.
      config: { access: { minRole: 'viewer' } },
      schema: {
        tags,
        summary: 'Remove a member (admins), or leave the tenant (yourself)',
        params: UserIdParams,
        response: { 204: Type.Null(), ...guarded },
      },
    },
    async (req, reply) => {
      const tenantId = req.tenant!.id
      const { userId } = req.params
      // Leaving is a person's decision: an API key acting for its creator can't make it.
      const self = userId === req.user!.id && !req.apiKey
      if (!self && !hasMinRole(req.role, 'admin')) {
        throw forbidden('INSUFFICIENT_ROLE', 'Removing another member needs the admin role', { requiredRole: 'admin', role: req.role })
      }
      const members = repo(req)
      const target = await members.find(userId)
      if (!target) throw memberNotFound()
      if (target.role === 'owner' && !self && req.membership!.role !== 'owner') throw ownersOnly()

      await req.tenantDb.transaction(async (tx) => {
        await members.removeTenantUser(tx, userId)
        await tenancy.memberships.remove(userId, tenantId) // 403 LAST_OWNER
      })
      await tenancy.memberships.invalidate(userId, tenantId)
      if (self && req.session.activeTenantId === tenantId) req.session.activeTenantId = undefined
      await record(req, self ? 'member.left' : 'member.removed', userId, { role: target.role })
      return reply.code(204).send(null)
    },
  )

  fastify.put(
    '/:userId/permissions',
    {
      config: { access: { minRole: 'admin' } },
      schema: {
        tags,
        summary: 'Grant (granted: true) or deny (false) one resource × action to a member, overriding their role',
        params: UserIdParams,
        body: PermissionBody,
        response: { 200: PermissionResult, ...guarded },
      },
    },
    async (req) => {
      const tenantId = req.tenant!.id
      const { userId } = req.params
      const { resource, action, granted } = req.body
      const members = repo(req)
      const target = await members.find(userId)
      if (!target) throw memberNotFound()
      await req.tenantDb.transaction(async (tx) => {
        // A member without a tenant user row reads as viewer (rbac.ts); create it as such.
        const local = await members.ensureTenantUser(tx, { id: userId, email: target.email, name: target.name }, 'viewer', false)
        await members.setPermission(tx, local.id, resource, action, granted)
      })
      await tenancy.memberships.invalidate(userId, tenantId)
      await record(req, 'member.permission_set', userId, { resource, action, granted })
      return { userId, resource, action, granted }
    },
  )

  fastify.delete(
    '/:userId/permissions/:resource/:action',
    {
      config: { access: { minRole: 'admin' } },
      schema: {
        tags,
        summary: "Remove a member's grant or denial: the role default applies again",
        params: PermissionParams,
        response: { 204: Type.Null(), ...guarded },
      },
    },
    async (req, reply) => {
      const tenantId = req.tenant!.id
      const { userId, resource, action } = req.params
      const members = repo(req)
      if (!(await members.find(userId))) throw memberNotFound()
      if (!(await members.removePermission(userId, resource, action)))
        throw notFound('PERMISSION_NOT_FOUND', 'No grant or denial for this resource and action')
      await tenancy.memberships.invalidate(userId, tenantId)
      await record(req, 'member.permission_removed', userId, { resource, action })
      return reply.code(204).send(null)
    },
  )
}

export default memberRoutes
