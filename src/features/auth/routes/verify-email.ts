/**
 * Email verification (mounted under /auth). Signup mails the link; a logged-in user can ask for it
 * again (rate limited per IP and per user); the token confirms without a session (the link may be
 * opened in another browser). Until verified, a password account works in its own tenant but can't
 * create API keys (403 EMAIL_NOT_VERIFIED), nor invite, accept invitations or be made owner.
 */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { eq, sql } from 'drizzle-orm'
import { Type } from 'typebox'
import { users as usersTable } from '../../../../drizzle/host/schema.js'
import { sendVerificationEmail } from '../account-emails.js'
import { UserSchema } from '../../../core/identity/schemas.js'
import { toPublicUser } from '../../../core/identity/users.js'
import type { HostDb } from '../../../core/db/host.js'
import { audit } from '../../../core/lib/audit.js'
import { conflict } from '../../../core/lib/errors.js'
import { errorResponses, Text } from '../../../core/lib/schemas.js'

export const TokenBody = Type.Object(
  { token: Text({ minLength: 1, maxLength: 512, description: 'the token from the emailed link' }) },
  { additionalProperties: false },
)
const Accepted = Type.Object({ status: Type.Literal('sent'), message: Type.String() })

const verifyEmailRoutes: FastifyPluginAsyncTypebox = async (fastify) => {
  const { host, userTokens, services, users } = fastify

  fastify.post(
    '/verify-email/request',
    {
      config: { rateLimit: { max: 10, timeWindow: '10 minutes' } },
      preValidation: fastify.requireUser,
      preHandler: [
        fastify.extraRateLimit({ max: 3, timeWindow: '10 minutes', keyGenerator: (req) => `verify-email:${req.user?.id ?? req.ip}` }),
      ],
      schema: {
        tags: ['auth'],
        summary: 'Mail the verification link again to the signed-in user',
        response: { 202: Accepted, ...errorResponses(401, 403, 409, 429) },
      },
    },
    async (req, reply) => {
      const user = await users.findById(req.user!.id)
      if (!user) throw conflict('USER_GONE', 'This account no longer exists')
      if (user.emailVerifiedAt) throw conflict('EMAIL_ALREADY_VERIFIED', 'This email address is already verified')
      await sendVerificationEmail({ userTokens, tasks: services.tasks, config: services.config }, user)
      await audit(host.db, { action: 'auth.verify_email_requested', actorUserId: user.id }, req)
      return reply.code(202).send({ status: 'sent', message: `We sent a new link to ${user.email}` })
    },
  )

  fastify.post(
    '/verify-email/confirm',
    {
      config: { rateLimit: { max: 20, timeWindow: '1 minute' } },
      schema: {
        tags: ['auth'],
        summary: 'Confirm the email address with the emailed token (no session needed)',
        description:
          'Bad tokens: 400 TOKEN_MALFORMED, 404 TOKEN_NOT_FOUND, 409 TOKEN_USED, 410 TOKEN_EXPIRED, 409 TOKEN_STALE (sent to an address the account no longer has).',
        body: TokenBody,
        response: { 200: Type.Object({ user: UserSchema }), ...errorResponses(400, 404, 409, 410, 429) },
      },
    },
    async (req) => {
      const user = await host.db.transaction(async (tx) => {
        const token = await userTokens.consume('verify_email', req.body.token, tx as unknown as HostDb)
        const [row] = await tx
          .update(usersTable)
          .set({ emailVerifiedAt: sql`coalesce(${usersTable.emailVerifiedAt}, now())` })
          .where(eq(usersTable.id, token.userId))
          .returning()
        return row!
      })
      // The caller's own session sees it at once (others within the 30 s snapshot).
      if (req.session.userId === user.id) req.session.user = req.user = toPublicUser(user)
      await audit(host.db, { action: 'auth.email_verified', actorUserId: user.id, targetType: 'user', targetId: user.id }, req)
      return { user: toPublicUser(user) }
    },
  )
}

export default verifyEmailRoutes
