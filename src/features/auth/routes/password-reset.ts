/**
 * Password reset (mounted under /auth).
 *
 * `request` answers 202 with one fixed body for every address, and does the same work for every
 * address: it submits the `auth.password_reset_request` job (src/features/auth/jobs.ts), which alone
 * looks the address up and mails a link (token: single use, stored hashed, 30 minutes). Nothing in the
 * answer or its timing says whether the address has an account.
 *
 * `confirm` sets the new password, marks the address verified (the token came through its mailbox),
 * and ends every session and API key of the user created before (sessions_valid_after). An account
 * that was unverified until then is also reclaimed (src/features/auth/reclaim.ts): whoever registered the
 * address first loses what they built into it.
 */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { FastifyRequest } from 'fastify'
import { eq } from 'drizzle-orm'
import { Type } from 'typebox'
import { type User, users as usersTable } from '../../../../drizzle/host/schema.js'
import { assertPasswordPolicy, hashPassword } from '../../../core/identity/password.js'
import { reclaimUnverifiedAccount } from '../reclaim.js'
import { Email, Password } from '../../../core/identity/schemas.js'
import type { HostDb } from '../../../core/db/host.js'
import { audit } from '../../../core/lib/audit.js'
import { errorResponses } from '../../../core/lib/schemas.js'
import { TokenBody } from './verify-email.js'

export const RESET_REQUESTED = {
  status: 'accepted',
  message: 'If an account exists for this address, we sent it a link to choose a new password. The link works once, for 30 minutes.',
} as const

const perEmail = (req: FastifyRequest) => `password-reset:${String((req.body as { email?: unknown })?.email ?? '').toLowerCase()}`

const passwordResetRoutes: FastifyPluginAsyncTypebox = async (fastify) => {
  const { host, userTokens, services, apiKeys, tenancy } = fastify

  fastify.post(
    '/password-reset/request',
    {
      config: { rateLimit: { max: 10, timeWindow: '10 minutes' } },
      // The same limit for every address, whether or not it has an account.
      preHandler: fastify.extraRateLimit({ max: 3, timeWindow: '15 minutes', keyGenerator: perEmail }),
      schema: {
        tags: ['auth'],
        summary: 'Ask for a password reset link (the same answer whether or not the address has an account)',
        body: Type.Object({ email: Email }, { additionalProperties: false }),
        response: {
          202: Type.Object({ status: Type.Literal('accepted'), message: Type.String() }),
          ...errorResponses(400, 429, 503),
        },
      },
    },
    async (req, reply) => {
      await services.tasks.submit('auth.password_reset_request', { email: req.body.email })
      return reply.code(202).send(RESET_REQUESTED)
    },
  )

  fastify.post(
    '/password-reset/confirm',
    {
      config: { rateLimit: { max: 20, timeWindow: '1 minute' } },
      schema: {
        tags: ['auth'],
        summary: 'Set a new password with the emailed token; ends every session and API key created before',
        description:
          'Bad tokens: 400 TOKEN_MALFORMED, 404 TOKEN_NOT_FOUND, 409 TOKEN_USED, 410 TOKEN_EXPIRED, 409 TOKEN_STALE. ' +
          'A password the policy refuses is a 400 and leaves the token usable.',
        body: Type.Object({ token: TokenBody.properties.token, password: Password }, { additionalProperties: false }),
        response: { 200: Type.Object({ status: Type.Literal('password_reset') }), ...errorResponses(400, 404, 409, 410, 429) },
      },
    },
    async (req) => {
      // This process's clock, like session.createdAt: sessions signed in after this are valid.
      const cutoff = new Date()
      const { before, after } = await host.db.transaction(async (tx) => {
        const token = await userTokens.consume('password_reset', req.body.token, tx as unknown as HostDb)
        const [before] = await tx.select().from(usersTable).where(eq(usersTable.id, token.userId)).for('update')
        // Refused passwords throw here, rolling the token back to unused.
        assertPasswordPolicy(req.body.password, before!.email)
        const [after] = await tx
          .update(usersTable)
          .set({
            passwordHash: await hashPassword(req.body.password),
            emailVerifiedAt: before!.emailVerifiedAt ?? cutoff,
            sessionsValidAfter: cutoff,
          })
          .where(eq(usersTable.id, token.userId))
          .returning()
        return { before: before as User, after: after as User }
      })
      await fastify.revokeUserCredentials(after.id, cutoff)
      const reclaimed =
        before.emailVerifiedAt === null
          ? await reclaimUnverifiedAccount(
              { db: host.db, memberships: tenancy.memberships, apiKeys, tasks: services.tasks },
              after,
              'password_reset',
              req,
            )
          : undefined
      await audit(
        host.db,
        {
          action: 'auth.password_reset',
          actorUserId: after.id,
          targetType: 'user',
          targetId: after.id,
          metadata: { verifiedNow: before.emailVerifiedAt === null, removedFrom: reclaimed?.removedFrom ?? [] },
        },
        req,
      )
      return { status: 'password_reset' as const }
    },
  )
}

export default passwordResetRoutes
