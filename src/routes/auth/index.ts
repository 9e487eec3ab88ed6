/**
 * Email + password identity: signup (with a personal tenant, seed `provision_new_user`), login,
 * logout, and the CSRF token for cookie-authenticated writes. Login and signup are rate limited per
 * IP (route config) and per email (a second limiter keyed on the body).
 *
 * Signup is all or nothing when the personal tenant can't even be registered (its slug stays taken
 * after retries, or the insert fails): the new user row is deleted again and the error answered, so
 * the same signup can simply be retried. Once the tenant is registered the account is kept: if its
 * setup then fails (503 QUEUE_UNAVAILABLE or PROVISIONING_FAILED) the user logs in and owns the
 * failed tenant, which an operator retries. And any login of a user with no membership at all
 * provisions a personal tenant (src/auth/personal-tenant.ts), so no path leaves an account without one.
 */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { FastifyRequest } from 'fastify'
import '../../plugins/external/csrf.js'
import { Type } from 'typebox'
import { assertPasswordPolicy, hashPassword, verifyPassword } from '../../auth/password.js'
import { ensurePersonalTenant, provisionPersonalTenant } from '../../auth/personal-tenant.js'
import { LoginBody, MembershipSchema, SignupBody, TenantSummary, UserSchema } from '../../auth/schemas.js'
import { toPublicUser } from '../../auth/users.js'
import { audit } from '../../lib/audit.js'
import { AppError, unauthorized } from '../../lib/errors.js'
import { errorResponses } from '../../lib/schemas.js'

const perEmail = (scope: string) => (req: FastifyRequest) =>
  `${scope}:${String((req.body as { email?: unknown })?.email ?? '').toLowerCase()}`

const authRoutes: FastifyPluginAsyncTypebox = async (fastify) => {
  const { users, host, tenancy } = fastify

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
          'was kept, retry the signup.',
        body: SignupBody,
        response: { 201: Type.Object({ user: UserSchema, tenant: TenantSummary }), ...errorResponses(400, 409, 429, 503) },
      },
    },
    async (req, reply) => {
      const { email, password, name } = req.body
      assertPasswordPolicy(password, email)
      const user = await users.create({ email, name, passwordHash: await hashPassword(password) })
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
      await req.signIn(user, tenant.id)
      await audit(host.db, { action: 'auth.signup', actorUserId: user.id, tenantId: tenant.id, metadata: { method: 'password' } }, req)
      return reply.code(201).send({ user: toPublicUser(user), tenant })
    },
  )

  fastify.post(
    '/login',
    {
      config: { rateLimit: { max: 20, timeWindow: '1 minute' } },
      preHandler: fastify.extraRateLimit({ max: 10, timeWindow: '10 minutes', keyGenerator: perEmail('login') }),
      schema: {
        tags: ['auth'],
        summary: 'Log in with email and password; starts a new session',
        body: LoginBody,
        response: { 200: Type.Object({ user: UserSchema, memberships: Type.Array(MembershipSchema) }), ...errorResponses(400, 401, 429) },
      },
    },
    async (req) => {
      const { email, password } = req.body
      const user = await users.findByEmail(email)
      // One answer for "no such user" and "wrong password": no account enumeration.
      if (!(await verifyPassword(user?.passwordHash, password)) || !user) {
        await audit(host.db, { action: 'auth.login_failed', actorUserId: user?.id ?? null, metadata: { email: email.toLowerCase() } }, req)
        throw unauthorized('INVALID_CREDENTIALS', 'Email or password is incorrect')
      }
      const { memberships } = await ensurePersonalTenant({ tenancy, users, log: req.log }, user)
      const active = memberships.find((m) => m.status === 'active')
      await req.signIn(user, active?.tenantId)
      await users.touchLogin(user.id)
      await audit(
        host.db,
        { action: 'auth.login', actorUserId: user.id, tenantId: active?.tenantId ?? null, metadata: { method: 'password' } },
        req,
      )
      return { user: toPublicUser(user), memberships }
    },
  )

  fastify.post(
    '/logout',
    {
      preHandler: fastify.requireUser,
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
      preHandler: fastify.requireUser,
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
