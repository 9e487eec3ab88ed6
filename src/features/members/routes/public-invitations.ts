/**
 * /invitations/:token — what the invitation email links to. GET shows the tenant, the inviter and the
 * role to anyone holding the token (no session: the invitee may not have an account yet); POST
 * …/accept joins the tenant, signed in with the invited address, verified (src/features/members/invitations/accept.ts).
 * Without an account, sign up with the token instead (POST /auth/signup { invitationToken }).
 *
 * Every unusable token has its own answer: 404 INVITATION_NOT_FOUND (unknown, replaced by a resend,
 * or its tenant deleted), 410 INVITATION_EXPIRED, 410 INVITATION_REVOKED, 409 INVITATION_USED; and for
 * the person accepting, 403 INVITATION_WRONG_ACCOUNT (another address) or 403 EMAIL_NOT_VERIFIED.
 */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { acceptInvitation, assertInvitee, assertUsable } from '../invitations/accept.js'
import { createInvitationsRepository } from '../invitations/repository.js'
import { AcceptedInvitation, PublicInvitation, TokenParams } from '../invitations/schemas.js'
import { unauthorized } from '../../../core/lib/errors.js'
import { errorResponses } from '../../../core/lib/schemas.js'

const tags = ['invitations']
// Tokens carry 256 random bits, so guessing is hopeless; the limit keeps scanners from costing us lookups.
const rateLimit = { max: 30, timeWindow: '1 minute' }

const publicInvitationRoutes: FastifyPluginAsyncTypebox = async (fastify) => {
  const { host, users, tenancy } = fastify
  const repo = createInvitationsRepository(host.db)

  fastify.get(
    '/:token',
    {
      config: { rateLimit },
      schema: {
        tags,
        summary: 'What an invitation offers: tenant, inviter and role (no session needed)',
        params: TokenParams,
        response: { 200: PublicInvitation, ...errorResponses(400, 404, 409, 410, 429) },
      },
    },
    async (req) => {
      const found = await repo.findByToken(req.params.token)
      assertUsable(found)
      const inv = found.invitation
      return {
        tenant: { name: found.tenant.name },
        inviter: { name: found.inviterName },
        email: inv.email,
        role: inv.role,
        localRole: inv.localRole,
        expiresAt: inv.expiresAt.toISOString(),
      }
    },
  )

  fastify.post(
    '/:token/accept',
    {
      config: { rateLimit },
      preValidation: fastify.requireUser,
      schema: {
        tags,
        summary: 'Accept an invitation: join the tenant (signed in with the invited address, verified)',
        description: 'Switches the session to the joined tenant. 409 ALREADY_MEMBER when you are in it already.',
        params: TokenParams,
        response: { 200: AcceptedInvitation, ...errorResponses(400, 401, 403, 404, 409, 410, 429) },
      },
    },
    async (req) => {
      const found = await repo.findByToken(req.params.token)
      assertUsable(found)
      const user = await users.findById(req.user!.id)
      if (!user) throw unauthorized()
      assertInvitee(found.invitation, user)
      const joined = await acceptInvitation({ host: host.db, tenancy, entitlements: fastify.entitlements.get, events: fastify.services.events }, found, user, { req })
      req.session.activeTenantId = joined.tenant.id
      return joined
    },
  )
}

export default publicInvitationRoutes
