/**
 * The caller: who they are, where they belong, which tenant the session is working in, and the
 * account's self-service: name, password, email address (changed on confirmation from the new
 * mailbox), sessions, an export of their data, and deleting the account. Every route needs a
 * logged-in session (never an API key); writes need the CSRF token like every cookie write.
 */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { and, desc, eq, isNull, or, sql } from 'drizzle-orm'
import { Type } from 'typebox'
import { apiKeys, auditLogs, memberships, tenants, userTokens, users as usersTable } from '../../../../drizzle/host/schema.js'
import { sendEmailChangedNotice, sendEmailChangeEmail } from '../account-emails.js'
import { assertPasswordPolicy, hashPassword, verifyPassword } from '../../../core/identity/password.js'
import { Email, MembershipSchema, Password, UserSchema } from '../../../core/identity/schemas.js'
import { toPublicUser } from '../../../core/identity/users.js'
import type { HostDb } from '../../../core/db/host.js'
import { audit } from '../../../core/lib/audit.js'
import { iso } from '../../../core/lib/dates.js'
import { AppError, badRequest, conflict, forbidden, notFound, PG, pgCode } from '../../../core/lib/errors.js'
import { authScope } from '../../../core/lib/openapi.js'
import { errorResponses, Text } from '../../../core/lib/schemas.js'
import { TokenBody } from './verify-email.js'

const Me = Type.Object({
  user: UserSchema,
  memberships: Type.Array(MembershipSchema),
  activeTenant: Type.Union([MembershipSchema, Type.Null()]),
})

const CurrentPassword = Type.String({ minLength: 1, maxLength: 1024, description: 'the account password, to confirm it is you' })
/** Audit entries an export includes at most (newest first). */
const EXPORT_AUDIT_MAX = 10_000

const meRoutes: FastifyPluginAsyncTypebox = async (fastify) => {
  const { tenancy, host, users, userTokens: tokens, services } = fastify
  fastify.addHook('preValidation', fastify.requireUser)
  fastify.addHook('onRoute', authScope('session'))

  /** The user's row, fresh; a password account must confirm `currentPassword` (403 CURRENT_PASSWORD_INVALID). */
  async function confirmIdentity(userId: string, currentPassword: string | undefined, required: 'always' | 'if-set') {
    const user = await users.findById(userId)
    if (!user) throw notFound('USER_NOT_FOUND', 'This account no longer exists')
    if (!user.passwordHash && required === 'if-set') return user
    if (!user.passwordHash)
      throw badRequest('NO_PASSWORD_SET', 'This account signs in with Google and has no password: use the password reset link to set one')
    if (currentPassword === undefined || !(await verifyPassword(user.passwordHash, currentPassword))) {
      throw forbidden('CURRENT_PASSWORD_INVALID', 'The current password is missing or incorrect')
    }
    return user
  }

  fastify.get(
    '/',
    { schema: { tags: ['me'], summary: 'The current user, memberships and active tenant', response: { 200: Me, ...errorResponses(401) } } },
    async (req) => {
      const user = req.user!
      const memberships = await tenancy.memberships.listForUser(user.id)
      const active = memberships.find((m) => m.tenantId === req.session.activeTenantId && m.status === 'active') ?? null
      return { user, memberships, activeTenant: active }
    },
  )

  fastify.patch(
    '/',
    {
      schema: {
        tags: ['me'],
        summary: 'Change your display name',
        body: Type.Object({ name: Text({ minLength: 1, maxLength: 100 }) }, { additionalProperties: false }),
        response: { 200: Type.Object({ user: UserSchema }), ...errorResponses(400, 401, 403) },
      },
    },
    async (req) => {
      const name = req.body.name.trim()
      if (!name) throw badRequest('NAME_EMPTY', 'The name must contain something besides spaces')
      const user = (await users.update(req.user!.id, { name }))!
      req.session.user = req.user = toPublicUser(user)
      await audit(
        host.db,
        { action: 'user.updated', actorUserId: user.id, targetType: 'user', targetId: user.id, metadata: { fields: ['name'] } },
        req,
      )
      return { user: req.user }
    },
  )

  fastify.put(
    '/active-tenant',
    {
      schema: {
        tags: ['me'],
        summary: 'Switch the session to another tenant the user belongs to (also where the next login starts)',
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
      await users.update(user.id, { activeTenantId: target.tenantId })
      await audit(host.db, { action: 'auth.tenant_switch', actorUserId: user.id, tenantId: target.tenantId }, req)
      return { activeTenant: target }
    },
  )

  fastify.post(
    '/password',
    {
      config: { rateLimit: { max: 10, timeWindow: '10 minutes' } },
      schema: {
        tags: ['me'],
        summary: 'Change your password; every other session ends (this one continues under a new id: fetch a new CSRF token)',
        body: Type.Object({ currentPassword: CurrentPassword, newPassword: Password }, { additionalProperties: false }),
        response: { 204: Type.Null(), ...errorResponses(400, 401, 403, 429) },
      },
    },
    async (req, reply) => {
      const user = await confirmIdentity(req.user!.id, req.body.currentPassword, 'always')
      assertPasswordPolicy(req.body.newPassword, user.email)
      const cutoff = new Date()
      const updated = (await users.update(user.id, { passwordHash: await hashPassword(req.body.newPassword), sessionsRevokedAt: cutoff }))!
      await fastify.revokeUserSessions(user.id, cutoff)
      await req.signIn(updated, req.session.activeTenantId)
      await audit(host.db, { action: 'auth.password_changed', actorUserId: user.id, targetType: 'user', targetId: user.id }, req)
      return reply.code(204).send(null)
    },
  )

  fastify.post(
    '/sessions/revoke-all',
    {
      schema: {
        tags: ['me'],
        summary: 'Log out everywhere: every session of this account ends, this one included (API keys stay)',
        response: { 204: Type.Null(), ...errorResponses(401, 403) },
      },
    },
    async (req, reply) => {
      const userId = req.user!.id
      const cutoff = new Date()
      await users.update(userId, { sessionsRevokedAt: cutoff })
      await fastify.revokeUserSessions(userId, cutoff)
      await req.signOut()
      await audit(host.db, { action: 'auth.sessions_revoked', actorUserId: userId, targetType: 'user', targetId: userId }, req)
      return reply.code(204).send(null)
    },
  )

  fastify.post(
    '/email',
    {
      config: { rateLimit: { max: 5, timeWindow: '10 minutes' } },
      schema: {
        tags: ['me'],
        summary: 'Ask to move the account to another address: a confirmation link goes to the new address',
        description:
          'Password accounts confirm with currentPassword. The answer is the same whether or not the new address has an account; ' +
          'confirming onto an address that has one is 409 EMAIL_TAKEN.',
        body: Type.Object({ newEmail: Email, currentPassword: Type.Optional(CurrentPassword) }, { additionalProperties: false }),
        response: {
          202: Type.Object({ status: Type.Literal('sent'), message: Type.String() }),
          ...errorResponses(400, 401, 403, 409, 429),
        },
      },
    },
    async (req, reply) => {
      const user = await confirmIdentity(req.user!.id, req.body.currentPassword, 'if-set')
      const newEmail = req.body.newEmail.trim()
      if (newEmail.toLowerCase() === user.email.toLowerCase())
        throw badRequest('EMAIL_UNCHANGED', 'This is already the address of your account')
      await sendEmailChangeEmail({ userTokens: tokens, tasks: services.tasks, config: services.config }, user, newEmail)
      await audit(
        host.db,
        { action: 'user.email_change_requested', actorUserId: user.id, targetType: 'user', targetId: user.id, metadata: { newEmail } },
        req,
      )
      return reply
        .code(202)
        .send({ status: 'sent', message: `We sent a confirmation link to ${newEmail}; your address changes when you use it` })
    },
  )

  fastify.post(
    '/email/confirm',
    {
      config: { rateLimit: { max: 20, timeWindow: '1 minute' } },
      schema: {
        tags: ['me'],
        summary: 'Move the account to the new address with the token mailed there (signed in as that account)',
        description:
          'Bad tokens: 400 TOKEN_MALFORMED, 404 TOKEN_NOT_FOUND, 409 TOKEN_USED, 410 TOKEN_EXPIRED, 409 TOKEN_STALE, ' +
          '403 TOKEN_WRONG_ACCOUNT (another account asked for it); 409 EMAIL_TAKEN when the address got an account meanwhile.',
        body: TokenBody,
        response: { 200: Type.Object({ user: UserSchema }), ...errorResponses(400, 401, 403, 404, 409, 410, 429) },
      },
    },
    async (req) => {
      const me = req.user!.id
      let previous = ''
      const user = await host.db
        .transaction(async (tx) => {
          const token = await tokens.consume('email_change', req.body.token, tx as unknown as HostDb)
          if (token.userId !== me)
            throw forbidden('TOKEN_WRONG_ACCOUNT', 'This link belongs to another account: sign in as that account to use it')
          previous = token.email
          const [row] = await tx
            .update(usersTable)
            .set({ email: token.newEmail!, emailVerifiedAt: sql`now()` })
            .where(eq(usersTable.id, me))
            .returning()
          return row!
        })
        .catch((err) => {
          if (pgCode(err) === PG.uniqueViolation) throw conflict('EMAIL_TAKEN', 'An account with this email already exists')
          throw err
        })
      req.session.user = req.user = toPublicUser(user)
      await audit(
        host.db,
        { action: 'user.email_changed', actorUserId: me, targetType: 'user', targetId: me, metadata: { from: previous, to: user.email } },
        req,
      )
      // The change is made: a queue that is down delays nothing the user asked for, so the notice is best effort.
      await sendEmailChangedNotice({ tasks: services.tasks }, user, previous).catch((err) =>
        req.log.warn({ err }, 'email change notice to the old address not queued'),
      )
      return { user: req.user }
    },
  )

  fastify.get(
    '/export',
    {
      config: { rateLimit: { max: 5, timeWindow: '1 minute' } },
      schema: {
        tags: ['me'],
        summary: 'Everything the platform keeps about you, as JSON: profile, memberships, API keys you created, audit entries about you',
        response: {
          200: Type.Object({
            exportedAt: Type.String({ format: 'date-time' }),
            profile: Type.Object({
              id: Type.String(),
              email: Type.String(),
              name: Type.Union([Type.String(), Type.Null()]),
              emailVerifiedAt: Type.Union([Type.String(), Type.Null()]),
              hasPassword: Type.Boolean(),
              googleLinked: Type.Boolean(),
              activeTenantId: Type.Union([Type.String(), Type.Null()]),
              lastLoginAt: Type.Union([Type.String(), Type.Null()]),
              createdAt: Type.String(),
            }),
            memberships: Type.Array(MembershipSchema),
            apiKeys: Type.Array(
              Type.Object({
                id: Type.String(),
                tenantId: Type.String(),
                name: Type.String(),
                prefix: Type.String(),
                role: Type.String(),
                createdAt: Type.String(),
                revokedAt: Type.Union([Type.String(), Type.Null()]),
              }),
            ),
            auditEntries: Type.Array(
              Type.Object({
                id: Type.String(),
                action: Type.String(),
                tenantId: Type.Union([Type.String(), Type.Null()]),
                actorUserId: Type.Union([Type.String(), Type.Null()]),
                targetType: Type.Union([Type.String(), Type.Null()]),
                targetId: Type.Union([Type.String(), Type.Null()]),
                ip: Type.Union([Type.String(), Type.Null()]),
                userAgent: Type.Union([Type.String(), Type.Null()]),
                metadata: Type.Record(Type.String(), Type.Unknown()),
                createdAt: Type.String(),
              }),
            ),
            auditEntriesTruncated: Type.Boolean(),
          }),
          ...errorResponses(401, 404, 429),
        },
      },
    },
    async (req, reply) => {
      const me = req.user!.id
      const user = await users.findById(me)
      if (!user) throw notFound('USER_NOT_FOUND', 'This account no longer exists')
      const [memberships, keys, entries] = await Promise.all([
        tenancy.memberships.listForUser(me),
        host.db.select().from(apiKeys).where(eq(apiKeys.createdBy, me)).orderBy(desc(apiKeys.id)),
        host.db
          .select()
          .from(auditLogs)
          .where(or(eq(auditLogs.actorUserId, me), and(eq(auditLogs.targetType, 'user'), eq(auditLogs.targetId, me))))
          .orderBy(desc(auditLogs.createdAt))
          .limit(EXPORT_AUDIT_MAX + 1),
      ])
      await audit(host.db, { action: 'user.exported', actorUserId: me, targetType: 'user', targetId: me }, req)
      reply.header('content-disposition', `attachment; filename="account-${me}.json"`)
      return {
        exportedAt: new Date().toISOString(),
        profile: {
          id: user.id,
          email: user.email,
          name: user.name,
          emailVerifiedAt: iso(user.emailVerifiedAt),
          hasPassword: user.passwordHash !== null,
          googleLinked: user.googleId !== null,
          activeTenantId: user.activeTenantId,
          lastLoginAt: iso(user.lastLoginAt),
          createdAt: user.createdAt.toISOString(),
        },
        memberships,
        apiKeys: keys.map((k) => ({
          id: k.id,
          tenantId: k.tenantId,
          name: k.name,
          prefix: k.prefix,
          role: k.role,
          createdAt: k.createdAt.toISOString(),
          revokedAt: iso(k.revokedAt),
        })),
        auditEntries: entries.slice(0, EXPORT_AUDIT_MAX).map((e) => ({
          id: e.id,
          action: e.action,
          tenantId: e.tenantId,
          actorUserId: e.actorUserId,
          targetType: e.targetType,
          targetId: e.targetId,
          ip: e.ip,
          userAgent: e.userAgent,
          metadata: e.metadata,
          createdAt: e.createdAt.toISOString(),
        })),
        auditEntriesTruncated: entries.length > EXPORT_AUDIT_MAX,
      }
    },
  )

  fastify.delete(
    '/',
    {
      config: { rateLimit: { max: 5, timeWindow: '10 minutes' } },
      schema: {
        tags: ['me'],
        summary: 'Delete your account',
        description:
          'Refused with 409 LAST_OWNER_OF_SHARED_TENANT while you are the last owner of a tenant that has other members ' +
          '(make someone else owner, or remove them, first). Otherwise: tenants where you are the only member are deleted ' +
          '(lifecycle softDeleted), your other memberships and API keys end, every session ends, and the account row is ' +
          'anonymised (kept for the audit trail). Password accounts confirm with currentPassword.',
        body: Type.Optional(Type.Object({ currentPassword: Type.Optional(CurrentPassword) }, { additionalProperties: false })),
        response: { 204: Type.Null(), ...errorResponses(400, 401, 403, 404, 409, 429) },
      },
    },
    async (req, reply) => {
      const me = req.user!.id
      await confirmIdentity(me, req.body?.currentPassword, 'if-set')
      const others = sql<number>`(select count(*)::int from ${memberships} m2 where m2.tenant_id = ${memberships.tenantId} and m2.user_id <> ${me})`
      const otherOwners = sql<number>`(select count(*)::int from ${memberships} m3 where m3.tenant_id = ${memberships.tenantId} and m3.user_id <> ${me} and m3.role = 'owner' and m3.status = 'active')`
      const mine = await host.db
        .select({ tenantId: memberships.tenantId, slug: tenants.slug, role: memberships.role, others, otherOwners })
        .from(memberships)
        .innerJoin(tenants, eq(tenants.id, memberships.tenantId))
        .where(and(eq(memberships.userId, me), isNull(tenants.deletedAt)))
      const blocking = mine.filter((m) => m.role === 'owner' && m.others > 0 && m.otherOwners === 0)
      if (blocking.length) {
        throw new AppError(
          409,
          'LAST_OWNER_OF_SHARED_TENANT',
          `You are the last owner of ${blocking.map((b) => b.slug).join(', ')}, which other people use: make one of them owner (or remove them) first`,
          { tenants: blocking.map((b) => b.slug) },
        )
      }
      // Tenants nobody else uses go through the lifecycle (billing cancelled, marked deleted, pools closed).
      const alone = mine.filter((m) => m.others === 0)
      for (const t of alone) await services.provisioner.run('softDeleted', t.tenantId, { actorUserId: me })
      for (const m of mine.filter((x) => x.others > 0)) {
        await host.db.delete(memberships).where(and(eq(memberships.userId, me), eq(memberships.tenantId, m.tenantId)))
        await tenancy.memberships.invalidate(me, m.tenantId)
        await audit(
          host.db,
          {
            action: 'member.removed',
            tenantId: m.tenantId,
            actorUserId: me,
            targetType: 'user',
            targetId: me,
            metadata: { reason: 'account_deleted' },
          },
          req,
        )
      }
      const cutoff = new Date()
      const revokedKeys = await host.db
        .update(apiKeys)
        .set({ revokedAt: sql`now()` })
        .where(and(eq(apiKeys.createdBy, me), isNull(apiKeys.revokedAt)))
        .returning({ id: apiKeys.id })
      for (const k of revokedKeys) await fastify.apiKeys.invalidate(k.id)
      await host.db.delete(userTokens).where(eq(userTokens.userId, me))
      // Anonymised, not deleted: audit entries, tenants and subscriptions keep pointing at a row.
      await users.update(me, {
        email: `deleted-${me}@deleted.invalid`,
        name: null,
        passwordHash: null,
        googleId: null,
        emailVerifiedAt: null,
        activeTenantId: null,
        sessionsValidAfter: cutoff,
        deletedAt: cutoff,
      })
      await fastify.revokeUserCredentials(me, cutoff)
      await req.signOut()
      await audit(
        host.db,
        {
          action: 'user.deleted',
          actorUserId: me,
          targetType: 'user',
          targetId: me,
          metadata: {
            tenantsDeleted: alone.map((t) => t.tenantId),
            membershipsEnded: mine.length - alone.length,
            keysRevoked: revokedKeys.length,
          },
        },
        req,
      )
      return reply.code(204).send(null)
    },
  )
}

export default meRoutes
