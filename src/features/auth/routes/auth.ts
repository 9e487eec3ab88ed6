/**
 * Email + password identity: signup (with a personal tenant), login,
 * logout, and the CSRF token for cookie-authenticated writes. Signup is rate limited per IP (route
 * config) and per email (a second limiter keyed on the body) and mails the address a verification link.
 * Login is throttled on failures only (src/features/auth/login-throttle.ts): per email + IP and per IP, plus a
 * growing delay per email, so nobody can lock an owner out of their account from elsewhere.
 * Email verification and password reset: ./verify-email.ts and ./password-reset.ts.
 *
 * Signup is all or nothing when the personal tenant can't even be registered (its slug stays taken
 * after retries, or the insert fails): the new user row is deleted again and the error answered, so
 * the same signup can simply be retried. Once the tenant is registered the account is kept: if its
 * setup then fails (503 QUEUE_UNAVAILABLE or PROVISIONING_FAILED) the user logs in and owns the
 * failed tenant, which an operator retries. And any login of a user with no membership at all
 * provisions a personal tenant (src/features/auth/personal-tenant.ts), so no path leaves an account without one.
 */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { FastifyRequest } from 'fastify'
import '../../../core/plugins/external/csrf.js'
import { Type } from 'typebox'
import { sendVerificationEmail } from '../account-emails.js'
import { createLoginThrottle } from '../login-throttle.js'
import { chooseLoginTenant } from '../login-tenant.js'
import { assertPasswordPolicy, hashPassword, verifyPassword } from '../../../core/identity/password.js'
import { ensurePersonalTenant, provisionPersonalTenant } from '../personal-tenant.js'
import { LoginBody, MembershipSchema, SignupBody, TenantSummary, UserSchema } from '../../../core/identity/schemas.js'
import { toPublicUser, userDisabled } from '../../../core/identity/users.js'
import {
  AcceptedInvitation,
  acceptInvitation,
  assertUsable,
  createInvitationsRepository,
  INVITATION_ERRORS,
  invitedAddress,
} from '../../members/index.js'
import { audit } from '../../../core/lib/audit.js'
import { AppError, unauthorized } from '../../../core/lib/errors.js'
import { errorResponses } from '../../../core/lib/schemas.js'
import passwordResetRoutes from './password-reset.js'
import verifyEmailRoutes from './verify-email.js'

const perEmail = (scope: string) => (req: FastifyRequest) =>
  `${scope}:${String((req.body as { email?: unknown })?.email ?? '').toLowerCase()}`

const authRoutes: FastifyPluginAsyncTypebox = async (fastify) => {
  const { users, host, tenancy, userTokens, services } = fastify
  const throttle = createLoginThrottle(fastify)
  await fastify.register(verifyEmailRoutes)
  await fastify.register(passwordResetRoutes)
  const invitations = createInvitationsRepository(host.db)

  fastify.post(
    '/signup',
    {
      config: { rateLimit: { max: 10, timeWindow: '1 minute' } },
      preHandler: fastify.extraRateLimit({ max: 5, timeWindow: '10 minutes', keyGenerator: perEmail('signup') }),
      schema: {
        tags: ['auth'],
        summary: 'Create an account and its personal tenant; starts a session',
        description:
          'tenant.status is "provisioning" while the job queue sets the tenant up (poll GET /me until its tenantStatus is ' +
          '"active"), or "active" at once with PROVISION_INLINE. 503 QUEUE_UNAVAILABLE when the queue is down (the account ' +
          'exists and owns the failed tenant: log in). 503 TENANT_SETUP_FAILED when no tenant could be registered: nothing ' +
          'was kept, retry the signup. With an invitationToken (from an invitation email, for this same email) the address ' +
          'is verified at once, the invitation accepted (`invitation`) and the session starts in the joined tenant; an ' +
          'unusable token answers like POST /invitations/:token/accept (404/409/410, 403 INVITATION_WRONG_ACCOUNT) and creates nothing.',
        body: SignupBody,
        response: {
          201: Type.Object({ user: UserSchema, tenant: TenantSummary, invitation: Type.Optional(AcceptedInvitation) }),
          ...errorResponses(400, 403, 404, 409, 410, 429, 503),
        },
      },
    },
    async (req, reply) => {
      const { email, password, name, invitationToken } = req.body
      assertPasswordPolicy(password, email)
      // The token arrived at the invited address: signing up with it for that address proves the address.
      const invitation = invitationToken === undefined ? undefined : await invitations.findByToken(invitationToken)
      if (invitationToken !== undefined) {
        assertUsable(invitation)
        if (!invitedAddress(invitation.invitation, email)) throw INVITATION_ERRORS.wrongAccount()
      }
      const user = await users.create({ email, name, passwordHash: await hashPassword(password), emailVerified: invitation !== undefined })
      let tenant: Awaited<ReturnType<typeof provisionPersonalTenant>>
      try {
        tenant = await provisionPersonalTenant(tenancy, user)
      } catch (err) {
        if (!(await users.deleteIfNoMemberships(user.id))) throw err // a tenant was registered: the account stays
        req.log.warn({ err, email }, 'signup rolled back: no personal tenant could be registered')
        if (err instanceof AppError && err.code === 'SLUG_TAKEN')
          throw new AppError(
            503,
            'TENANT_SETUP_FAILED',
            'Your workspace could not be created, so the account was not kept; please sign up again',
          )
        throw err
      }
      const joined = invitation && (await acceptInvitation({ host: host.db, tenancy, entitlements: fastify.entitlements.get, events: fastify.services.events }, invitation, user, { req, atSignup: true }))
      await req.signIn(user, joined?.tenant.id ?? tenant.id)
      // A signup through an invitation proved the address already.
      if (!joined) await sendVerificationEmail({ userTokens, tasks: services.tasks, config: services.config }, user)
      await audit(
        host.db,
        {
          action: 'auth.signup',
          actorUserId: user.id,
          tenantId: tenant.id,
          metadata: { method: 'password', invitationId: invitation?.invitation.id },
        },
        req,
      )
      return reply.code(201).send({ user: toPublicUser(user), tenant, ...(joined ? { invitation: joined } : {}) })
    },
  )

  fastify.post(
    '/login',
    {
      // A flood guard on every attempt; failures are what the throttle counts.
      config: { rateLimit: { max: 60, timeWindow: '1 minute' } },
      schema: {
        tags: ['auth'],
        summary: 'Log in with email and password; starts a new session',
        description:
          'Failed logins are counted per email + IP and per IP (429 RATE_LIMITED past the limit, from that source only); ' +
          'failures on one email from anywhere only delay the answer (at most 2 s), never refuse it. ' +
          '403 USER_DISABLED (after a correct password) when a platform admin disabled the account.',
        body: LoginBody,
        response: { 200: Type.Object({ user: UserSchema, memberships: Type.Array(MembershipSchema) }), ...errorResponses(400, 401, 403, 429) },
      },
    },
    async (req, reply) => {
      const { email, password } = req.body
      let delayMs: number
      try {
        delayMs = await throttle.beforeAttempt(req)
      } catch (err) {
        if (err instanceof AppError && typeof err.details?.retryAfter === 'number') reply.header('retry-after', err.details.retryAfter)
        throw err
      }
      const user = await users.findByEmail(email)
      // One answer for "no such user" and "wrong password": no account enumeration.
      if (!(await verifyPassword(user?.passwordHash, password)) || !user) {
        await throttle.failed(req)
        await audit(
          host.db,
          { action: 'auth.login_failed', actorUserId: user?.id ?? null, metadata: { email: email.toLowerCase(), delayMs } },
          req,
        )
        throw unauthorized('INVALID_CREDENTIALS', 'Email or password is incorrect')
      }
      // Only once the password is right: nobody learns an account is disabled by guessing.
      if (user.disabledAt) {
        await audit(host.db, { action: 'auth.login_refused', actorUserId: user.id, metadata: { method: 'password', reason: 'disabled' } }, req)
        throw userDisabled()
      }
      const { memberships } = await ensurePersonalTenant({ tenancy, users, log: req.log }, user)
      const activeTenantId = await chooseLoginTenant(host.db, user, memberships)
      await req.signIn(user, activeTenantId)
      await users.touchLogin(user.id)
      await audit(
        host.db,
        { action: 'auth.login', actorUserId: user.id, tenantId: activeTenantId ?? null, metadata: { method: 'password', delayMs } },
        req,
      )
      return { user: toPublicUser(user), memberships }
    },
  )

  fastify.post(
    '/logout',
    {
      preValidation: fastify.requireUser,
      schema: { tags: ['auth'], summary: 'End the session server-side', response: { 204: Type.Null(), ...errorResponses(401, 403) } },
    },
    async (req, reply) => {
      const userId = req.user?.id
      await req.signOut()
      await audit(host.db, { action: 'auth.logout', actorUserId: userId }, req)
      return reply.code(204).send(null)
    },
  )

  fastify.get(
    '/csrf',
    {
      preValidation: fastify.requireUser,
      schema: {
        tags: ['auth'],
        summary: 'CSRF token to send as x-csrf-token on cookie-authenticated writes',
        response: { 200: Type.Object({ token: Type.String() }), ...errorResponses(401) },
      },
    },
    async (_req, reply) => ({ token: await reply.generateCsrf() }),
  )
}

export default authRoutes
