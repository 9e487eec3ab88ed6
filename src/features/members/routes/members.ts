/**
 * /api/members — who belongs to the resolved tenant, and managing them. Viewers list; admins change
 * roles and per-user permissions and remove members; any member may leave. Nobody is added without
 * consent: people join by accepting an invitation (/api/invitations; POST here is a deprecated alias
 * that invites), and ownership is only offered (POST /:userId/ownership-offer) and taken up by the
 * admin it is offered to (/api/ownership-offers). Only an owner offers or revokes ownership, and the
 * last owner can never be demoted or removed (memberships.setRole/remove check it under a row lock →
 * 403 LAST_OWNER). Every write here needs a person: API keys get 403 API_KEY_NOT_ALLOWED
 * (config.sessionOnly). Removing a member revokes their API keys in this tenant for good.
 *
 * A membership change touches two databases: the host membership and the tenant user. The tenant
 * transaction wraps the host write, so a refused host write (LAST_OWNER, ALREADY_MEMBER) rolls the
 * tenant side back too. Every change is audited and drops the cached membership.
 */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { FastifyRequest } from 'fastify'
import { Type } from 'typebox'
import type { AppOptions } from '../../../core/config.js'
import { requireVerifiedUser } from '../../../core/identity/email-verified.js'
import { emailNotVerified } from '../../../core/identity/users.js'
import { InvitationSchema, OwnershipOfferSchema } from '../invitations/schemas.js'
import { audit } from '../../../core/lib/audit.js'
import { conflict, forbidden, notFound } from '../../../core/lib/errors.js'
import { errorResponses } from '../../../core/lib/schemas.js'
import { createOwnershipOffers, OFFER_TTL_DAYS, toOfferView } from '../ownership-offers.js'
import { ownershipOfferEmail } from '../../../core/email/senders.js'
import { createMembersRepository, type MemberView } from '../repository.js'
import {
  AddMemberBody,
  ListMembersQuery,
  MemberPageSchema,
  MemberSchema,
  permissionBody,
  PermissionParams,
  PermissionResult,
  UpdateMemberBody,
  UserIdParams,
} from '../schemas.js'
import { hasMinRole } from '../../../core/tenancy/rbac.js'
import '../events.js'
import { inviter } from './invitations.js'

const tags = ['members']
const guarded = errorResponses(400, 401, 403, 404, 409, 503)
const memberNotFound = () => notFound('MEMBER_NOT_FOUND', 'No such member in this tenant')
const ownersOnly = () => forbidden('INSUFFICIENT_ROLE', 'Only an owner can offer or revoke ownership', { requiredRole: 'owner' })

const memberRoutes: FastifyPluginAsyncTypebox<AppOptions> = async (fastify, { config }) => {
  const { host, tenancy, users, apiKeys } = fastify
  const { invite } = inviter(fastify, config)
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
      config: { access: { minRole: 'admin' }, sessionOnly: true },
      schema: {
        tags,
        summary: 'Deprecated: invites the address, exactly as POST /api/invitations (nobody is added without accepting)',
        deprecated: true,
        body: AddMemberBody,
        response: { 201: InvitationSchema, ...guarded },
      },
    },
    async (req, reply) => reply.code(201).send(await invite(req, req.body)),
  )

  fastify.patch(
    '/:userId',
    {
      config: { access: { minRole: 'admin' }, sessionOnly: true },
      schema: {
        tags,
        summary: "Change a member's role and/or local role",
        description: 'Never to owner: 403 OWNERSHIP_NEEDS_ACCEPTANCE (offer it: POST /api/members/:userId/ownership-offer).',
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
      if (role === 'owner' && target.role !== 'owner') {
        throw forbidden(
          'OWNERSHIP_NEEDS_ACCEPTANCE',
          'Ownership is offered, not given: POST /api/members/:userId/ownership-offer, which they accept',
        )
      }

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
      config: { access: { minRole: 'viewer' }, sessionOnly: true },
      schema: {
        tags,
        summary: 'Remove a member (admins), or leave the tenant (yourself); their API keys here are revoked',
        params: UserIdParams,
        response: { 204: Type.Null(), ...guarded },
      },
    },
    async (req, reply) => {
      const tenantId = req.tenant!.id
      const { userId } = req.params
      const self = userId === req.user!.id
      if (!self && !hasMinRole(req.role, 'admin')) {
        throw forbidden('INSUFFICIENT_ROLE', 'Removing another member needs the admin role', { requiredRole: 'admin', role: req.role })
      }
      const members = repo(req)
      const target = await members.find(userId)
      if (!target) throw memberNotFound()
      if (target.role === 'owner' && !self && req.membership!.role !== 'owner') throw ownersOnly()

      const { revokedKeyIds } = await req.tenantDb.transaction(async (tx) => {
        await members.removeTenantUser(tx, userId)
        return tenancy.memberships.remove(userId, tenantId) // 403 LAST_OWNER; revokes their keys here
      })
      await tenancy.memberships.invalidate(userId, tenantId)
      for (const id of revokedKeyIds) await apiKeys.invalidate(id)
      if (self && req.session.activeTenantId === tenantId) req.session.activeTenantId = undefined
      await record(req, self ? 'member.left' : 'member.removed', userId, { role: target.role, revokedApiKeys: revokedKeyIds.length })
      await fastify.services.events.publish(tenantId, 'member.left', { member: { userId, role: target.role }, removedBy: self ? null : req.user!.id })
      return reply.code(204).send(null)
    },
  )

  fastify.put(
    '/:userId/permissions',
    {
      config: { access: { minRole: 'admin' }, sessionOnly: true },
      schema: {
        tags,
        summary: 'Grant (granted: true) or deny (false) one resource × action to a member, overriding their role',
        params: UserIdParams,
        body: permissionBody(fastify.services.permissions),
        response: { 200: PermissionResult, ...guarded },
      },
    },
    async (req) => {
      const tenantId = req.tenant!.id
      const { userId } = req.params
      const { granted, ...permission } = req.body
      const { resource, action } = permission
      const members = repo(req)
      const target = await members.find(userId)
      if (!target) throw memberNotFound()
      await req.tenantDb.transaction(async (tx) => {
        // A member without a tenant user row reads as viewer (rbac.ts); create it as such.
        const local = await members.ensureTenantUser(tx, { id: userId, email: target.email, name: target.name }, 'viewer', false)
        await members.setPermission(tx, local.id, permission, granted)
      })
      await tenancy.memberships.invalidate(userId, tenantId)
      await record(req, 'member.permission_set', userId, { resource, action, granted })
      return { userId, resource, action, granted }
    },
  )

  fastify.delete(
    '/:userId/permissions/:resource/:action',
    {
      config: { access: { minRole: 'admin' }, sessionOnly: true },
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

  fastify.post(
    '/:userId/ownership-offer',
    {
      config: { access: { minRole: 'admin' }, sessionOnly: true },
      schema: {
        tags,
        summary: 'Offer ownership to an admin of the tenant (owners); it takes effect when they accept',
        description:
          '409 OFFER_NEEDS_ADMIN unless the member is an admin; 409 ALREADY_OWNER; 409 OFFER_PENDING when one is open; ' +
          "403 EMAIL_NOT_VERIFIED when the member's (or your) email is not verified. Accept or decline at /api/ownership-offers.",
        params: UserIdParams,
        response: { 201: OwnershipOfferSchema, ...guarded },
      },
    },
    async (req, reply) => {
      const { userId } = req.params
      if (req.membership!.role !== 'owner') throw ownersOnly()
      const me = await requireVerifiedUser(users, req.user!.id)
      const target = await repo(req).find(userId)
      if (target?.status !== 'active') throw memberNotFound()
      if (target.role === 'owner') throw conflict('ALREADY_OWNER', 'This member is already an owner')
      if (target.role !== 'admin')
        throw conflict('OFFER_NEEDS_ADMIN', 'Ownership is offered to admins only: make the member an admin first')
      const targetUser = await users.findById(userId)
      if (!targetUser?.emailVerifiedAt) throw emailNotVerified("The member's")
      const offer = await createOwnershipOffers(host.db, req.tenant!.id).create(userId, me.id)
      await record(req, 'ownership.offered', userId, { offerId: offer.id })
      // The offer is open either way (GET /api/ownership-offers lists it), so a queue that is down only delays the news.
      const mail = ownershipOfferEmail({
        to: targetUser.email,
        userName: targetUser.name ?? targetUser.email.split('@')[0]!,
        offererName: me.name ?? me.email,
        tenantName: req.tenant!.name,
        offerUrl: `${config.appBaseUrl}/ownership-offers/${offer.id}`,
        expiresIn: `${OFFER_TTL_DAYS} days`,
      })
      await fastify.services.tasks.submit('email.send', mail).catch((err) => req.log.warn({ err }, 'ownership offer email not queued'))
      return reply.code(201).send(toOfferView(offer))
    },
  )
}

export default memberRoutes
