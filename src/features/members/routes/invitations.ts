/**
 * /api/invitations — the only way to bring someone into a tenant: an admin invites an email address,
 * the invitee accepts (src/features/members/routes). Admins of the resolved tenant, signed in with a verified email; never with an API key (config.sessionOnly).
 *
 * POST answers the same, in the same time, whether or not the address has an account: nothing here
 * looks the address up beyond this tenant's own members and invitations. The token travels only in
 * the email (the `email.send` job, sealed: src/core/email/sealed.ts); the response never carries it. A resend mints a new token and a
 * new 7-day expiry, so the previous link stops working.
 */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { FastifyRequest } from 'fastify'
import { Type } from 'typebox'
import type { AppOptions } from '../../../core/config.js'
import { requireVerifiedUser } from '../../../core/identity/email-verified.js'
import { sealVariables } from '../../../core/email/sealed.js'
import { invitationEmail } from '../../../core/email/senders.js'
import { createInvitationsRepository, INVITATION_TTL_DAYS, toInvitationView } from '../invitations/repository.js'
import { InvitationPage, InvitationSchema, InviteBody, PageQuery } from '../invitations/schemas.js'
import { audit } from '../../../core/lib/audit.js'
import { conflict, notFound } from '../../../core/lib/errors.js'
import { errorResponses, IdParams } from '../../../core/lib/schemas.js'
import type { AccessRule } from '../../../core/tenancy/rbac.js'
import { requireBelowLimit } from '../../billing/index.js'
import { countSeatsTaken } from '../seats.js'

const tags = ['invitations']
const guarded = errorResponses(400, 401, 403, 404, 409, 503)
// No per-user grant can open this: an invitation may carry the admin role.
const access: AccessRule = { minRole: 'admin' }
const notFoundHere = () => notFound('INVITATION_NOT_FOUND', 'No such invitation in this tenant')

/** The invite handler, shared with the deprecated POST /api/members. */
export function inviter(fastify: Parameters<FastifyPluginAsyncTypebox<AppOptions>>[0], config: AppOptions['config']) {
  const { host, users, services } = fastify
  const repo = createInvitationsRepository(host.db)

  async function send(req: FastifyRequest, invitation: { email: string }, token: string, inviterName: string) {
    const message = invitationEmail({
      to: invitation.email,
      inviterName,
      tenantName: req.tenant!.name,
      invitationUrl: `${config.appBaseUrl}/invitations/${token}`,
      expiresIn: `${INVITATION_TTL_DAYS} days`,
    })
    // The link is the token: sealed, so the job's record and Redis never hold it in clear.
    await services.tasks.submit('email.send', sealVariables(message, ['invitation_url'], config.encryptionKeys))
  }

  return {
    repo,
    send,
    async invite(
      req: FastifyRequest,
      body: { email: string; role: 'admin' | 'member'; localRole?: 'admin' | 'editor' | 'viewer' | undefined },
    ) {
      const me = await requireVerifiedUser(users, req.user!.id)
      const tenantId = req.tenant!.id
      const localRole = body.localRole ?? (body.role === 'admin' ? 'admin' : 'viewer')
      await requireBelowLimit(await fastify.entitlements.get(tenantId), 'members', () => countSeatsTaken(host.db, tenantId))
      const { invitation, token } = await repo.create({ tenantId, email: body.email, role: body.role, localRole, invitedBy: me.id })
      try {
        await send(req, invitation, token, me.name ?? me.email)
      } catch (err) {
        // No email, no invitation: the admin retries (the queue refusing is a 503 from the job layer).
        await repo.revoke(tenantId, invitation.id, me.id)
        throw err
      }
      await audit(
        host.db,
        {
          action: 'invitation.created',
          actorUserId: me.id,
          tenantId,
          targetType: 'invitation',
          targetId: invitation.id,
          metadata: { email: invitation.email, role: invitation.role, localRole },
        },
        req,
      )
      return toInvitationView(invitation)
    },
  }
}

const invitationRoutes: FastifyPluginAsyncTypebox<AppOptions> = async (fastify, { config }) => {
  const { host, users } = fastify
  const { repo, send, invite } = inviter(fastify, config)
  // Each invitation is an email to any address: bounded per person, across instances.
  const perUser = fastify.extraRateLimit({ max: 50, timeWindow: '1 hour', keyGenerator: (req: FastifyRequest) => `invite:${req.user!.id}` })

  fastify.post(
    '/',
    {
      config: { access, sessionOnly: true },
      preHandler: perUser,
      schema: {
        tags,
        summary: 'Invite an email address to the tenant (the token is emailed, never returned)',
        description:
          'The same answer whether or not the address has an account. 409 ALREADY_MEMBER when a member has this address; ' +
          '409 INVITATION_PENDING when an invitation to it is open (resend or revoke it); 403 LIMIT_REACHED when members and open ' +
          'invitations fill the plan’s members limit; 403 EMAIL_NOT_VERIFIED until your ' +
          'email is verified; 403 API_KEY_NOT_ALLOWED with an API key.',
        body: InviteBody,
        response: { 201: InvitationSchema, ...guarded, ...errorResponses(429) },
      },
    },
    async (req, reply) => reply.code(201).send(await invite(req, req.body)),
  )

  fastify.get(
    '/',
    {
      config: { access, sessionOnly: true },
      schema: {
        tags,
        summary: 'Open invitations (pending or expired; not accepted or revoked), newest first',
        querystring: PageQuery,
        response: { 200: InvitationPage, ...guarded },
      },
    },
    async (req) => repo.listOpen(req.tenant!.id, req.query),
  )

  fastify.delete(
    '/:id',
    {
      config: { access, sessionOnly: true },
      schema: {
        tags,
        summary: 'Revoke an open invitation (its link then answers 410 INVITATION_REVOKED)',
        params: IdParams,
        response: { 204: Type.Null(), ...guarded },
      },
    },
    async (req, reply) => {
      const tenantId = req.tenant!.id
      const revoked = await repo.revoke(tenantId, req.params.id, req.user!.id)
      if (!revoked) {
        const existing = await repo.find(tenantId, req.params.id)
        if (!existing) throw notFoundHere()
        throw conflict('INVITATION_NOT_OPEN', `This invitation was already ${existing.acceptedAt ? 'accepted' : 'revoked'}`)
      }
      await audit(
        host.db,
        {
          action: 'invitation.revoked',
          actorUserId: req.user!.id,
          tenantId,
          targetType: 'invitation',
          targetId: revoked.id,
          metadata: { email: revoked.email },
        },
        req,
      )
      return reply.code(204).send(null)
    },
  )

  fastify.post(
    '/:id/resend',
    {
      config: { access, sessionOnly: true },
      preHandler: perUser,
      schema: {
        tags,
        summary: 'Send an open invitation again, with a new token and a fresh 7-day expiry (the old link stops working)',
        params: IdParams,
        response: { 200: InvitationSchema, ...guarded, ...errorResponses(429) },
      },
    },
    async (req) => {
      const me = await requireVerifiedUser(users, req.user!.id)
      const tenantId = req.tenant!.id
      const renewed = await repo.renew(tenantId, req.params.id)
      if (!renewed) {
        const existing = await repo.find(tenantId, req.params.id)
        if (!existing) throw notFoundHere()
        throw conflict('INVITATION_NOT_OPEN', `This invitation was already ${existing.acceptedAt ? 'accepted' : 'revoked'}`)
      }
      await send(req, renewed.invitation, renewed.token, me.name ?? me.email)
      await audit(
        host.db,
        {
          action: 'invitation.resent',
          actorUserId: me.id,
          tenantId,
          targetType: 'invitation',
          targetId: renewed.invitation.id,
          metadata: { email: renewed.invitation.email },
        },
        req,
      )
      return toInvitationView(renewed.invitation)
    },
  )
}

export default invitationRoutes
