/**
 * /admin/api/users — every person on the platform, for platform admins (guard.ts): search by email or
 * name, one user with their memberships, disable / enable, and ending every session of a user.
 *
 * Disable sets disabled_at and, in the same UPDATE, sessions_valid_after: every session of the user
 * and every API key they created stop at once in every process (fastify.revokeUserCredentials), and
 * every login refuses them (403 USER_DISABLED; Google sign-in goes back to the login page with
 * `account_disabled`). Enable clears disabled_at only: the user logs in again, and the API keys made
 * before the disable stay void (new ones must be created). An admin cannot disable themselves (409),
 * so the last admin can't lock everyone out by mistake. Both are audited with actor, ip and user agent.
 *
 * Revoke sessions (a stolen laptop, a shared browser) ends every session the user has now, without
 * disabling them: sessions_revoked_at, as the user's own "log out everywhere" (POST /me/sessions/revoke-all)
 * writes it, published to every process at once. Their API keys keep working; they may log in again.
 */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { and, desc, eq, isNotNull, isNull, lt, type SQL, sql } from 'drizzle-orm'
import { Type } from 'typebox'
import { memberships, tenants, type User, users } from '../../../../drizzle/host/schema.js'
import type { AppOptions } from '../../../core/config.js'
import { isBootstrapAdmin } from '../../../core/identity/platform-admins.js'
import { audit } from '../../../core/lib/audit.js'
import { iso } from '../../../core/lib/dates.js'
import { conflict, notFound } from '../../../core/lib/errors.js'
import { errorResponses, IdParams, Text, Uuid } from '../../../core/lib/schemas.js'
import { TenantStatusSchema } from '../jobs.js'
import { Cursor, DateTime, DateTimeOrNull, Limit, page, StringOrNull, tags } from './schemas.js'

const UserSummary = Type.Object({
  id: Uuid,
  email: Type.String(),
  name: StringOrNull,
  emailVerified: Type.Boolean(),
  platformAdmin: Type.Boolean({ description: 'Admitted to /admin: granted, or a verified PLATFORM_ADMIN_EMAILS address' }),
  disabledAt: DateTimeOrNull,
  deletedAt: DateTimeOrNull,
  lastLoginAt: DateTimeOrNull,
  createdAt: DateTime,
  membershipsCount: Type.Integer(),
})

const UserDetail = Type.Intersect([
  UserSummary,
  Type.Object({
    sessionsRevokedAt: Type.Union([DateTime, Type.Null()], {
      description: 'Sessions started before this were ended (disable, password change, revoke-sessions); null if never',
    }),
    platformAdminSources: Type.Array(Type.Union([Type.Literal('granted'), Type.Literal('PLATFORM_ADMIN_EMAILS')])),
    memberships: Type.Array(
      Type.Object({
        tenantId: Uuid,
        slug: Type.String(),
        name: Type.String(),
        tenantStatus: TenantStatusSchema,
        role: Type.String(),
        status: Type.String(),
        createdAt: DateTime,
      }),
    ),
  }),
])

const UserActionResult = Type.Object({
  id: Uuid,
  disabledAt: DateTimeOrNull,
  outcome: Type.Union([Type.Literal('done'), Type.Literal('already_done')], { description: 'already_done: nothing changed (no audit entry)' }),
})

const RevokeSessionsResult = Type.Object({ id: Uuid, sessionsRevokedAt: DateTime })

const ListQuery = Type.Object(
  {
    q: Type.Optional(Text({ minLength: 1, maxLength: 200, description: 'Part of the email or the name' })),
    disabled: Type.Optional(Type.Boolean()),
    platformAdmin: Type.Optional(Type.Boolean({ description: 'Granted platform admins (is_platform_admin) only, or none of them' })),
    limit: Limit,
    cursor: Type.Optional(Cursor),
  },
  { additionalProperties: false },
)

const likePattern = (q: string) => `%${q.toLowerCase().replace(/[\\%_]/g, '\\$&')}%`
// Spelled out: drizzle leaves a lone table's columns unqualified, and in the subquery "id" would be m.id.
const membershipsCount = sql<number>`(select count(*)::int from core_memberships m where m.user_id = core_users.id)`
const errors = errorResponses(400, 404, 409)

const userAdminRoutes: FastifyPluginAsyncTypebox<AppOptions> = async (fastify, { config }) => {
  const db = fastify.host.db

  const summaryJson = (u: User, n: number) => ({
    id: u.id,
    email: u.email,
    name: u.name,
    emailVerified: u.emailVerifiedAt !== null,
    platformAdmin: u.isPlatformAdmin || isBootstrapAdmin(u, config.platformAdminEmails),
    disabledAt: iso(u.disabledAt),
    deletedAt: iso(u.deletedAt),
    lastLoginAt: iso(u.lastLoginAt),
    createdAt: u.createdAt.toISOString(),
    membershipsCount: n,
  })

  fastify.get(
    '/',
    { schema: { tags, summary: 'Every user, newest first: search by email or name, filters, cursor pagination', querystring: ListQuery, response: { 200: page(UserSummary), ...errors } } },
    async (req) => {
      const { q, disabled, platformAdmin, limit, cursor } = req.query
      const where: (SQL | undefined)[] = [cursor ? lt(users.id, cursor) : undefined]
      if (q) where.push(sql`(lower(${users.email}) like ${likePattern(q)} or lower(coalesce(${users.name}, '')) like ${likePattern(q)})`)
      if (disabled !== undefined) where.push(disabled ? isNotNull(users.disabledAt) : isNull(users.disabledAt))
      if (platformAdmin !== undefined) where.push(eq(users.isPlatformAdmin, platformAdmin))
      const rows = await db
        .select({ user: users, n: membershipsCount })
        .from(users)
        .where(and(...where))
        .orderBy(desc(users.id))
        .limit(limit + 1)
      const items = rows.slice(0, limit)
      return { items: items.map((r) => summaryJson(r.user, r.n)), nextCursor: rows.length > limit ? items.at(-1)!.user.id : null }
    },
  )

  const getUser = async (id: string) => {
    const user = await fastify.users.findById(id)
    if (!user) throw notFound('USER_NOT_FOUND', `no user ${id}`)
    return user
  }

  fastify.get(
    '/:id',
    { schema: { tags, summary: 'One user: verified, platform admin, disabled, memberships', params: IdParams, response: { 200: UserDetail, ...errors } } },
    async (req) => {
      const user = await getUser(req.params.id)
      const rows = await db
        .select({
          tenantId: tenants.id,
          slug: tenants.slug,
          name: tenants.name,
          tenantStatus: tenants.status,
          role: memberships.role,
          status: memberships.status,
          createdAt: memberships.createdAt,
        })
        .from(memberships)
        .innerJoin(tenants, eq(tenants.id, memberships.tenantId))
        .where(eq(memberships.userId, user.id))
        .orderBy(memberships.createdAt)
      const cutoff = Math.max(user.sessionsValidAfter?.getTime() ?? 0, user.sessionsRevokedAt?.getTime() ?? 0)
      return {
        ...summaryJson(user, rows.length),
        sessionsRevokedAt: cutoff === 0 ? null : new Date(cutoff).toISOString(),
        platformAdminSources: [
          ...(user.isPlatformAdmin ? (['granted'] as const) : []),
          ...(isBootstrapAdmin(user, config.platformAdminEmails) ? (['PLATFORM_ADMIN_EMAILS'] as const) : []),
        ],
        memberships: rows.map((m) => ({ ...m, createdAt: m.createdAt.toISOString() })),
      }
    },
  )

  fastify.post(
    '/:id/disable',
    {
      schema: {
        tags,
        summary: 'Disable a user: their sessions and API keys stop at once, and login refuses them (403 USER_DISABLED)',
        params: IdParams,
        response: { 200: UserActionResult, ...errors },
      },
    },
    async (req) => {
      const { id } = req.params
      if (id === req.user!.id) throw conflict('CANNOT_DISABLE_SELF', 'Platform admins cannot disable their own account')
      const at = new Date()
      const changed = await db.transaction(async (tx) => {
        const [row] = await tx
          .update(users)
          .set({ disabledAt: at, sessionsValidAfter: at })
          .where(and(eq(users.id, id), isNull(users.disabledAt)))
          .returning({ id: users.id, email: users.email })
        if (row) await audit(tx, { action: 'admin.user_disabled', actorUserId: req.user!.id, targetType: 'user', targetId: id, metadata: { email: row.email } }, req)
        return row !== undefined
      })
      if (!changed) return { id, disabledAt: iso((await getUser(id)).disabledAt), outcome: 'already_done' as const }
      // After commit: every process drops the user's sessions and API keys now, not at its next re-read.
      await fastify.revokeUserCredentials(id, at)
      return { id, disabledAt: at.toISOString(), outcome: 'done' as const }
    },
  )

  fastify.post(
    '/:id/enable',
    {
      schema: {
        tags,
        summary: 'Enable a disabled user: they may log in again (API keys made before the disable stay void)',
        params: IdParams,
        response: { 200: UserActionResult, ...errors },
      },
    },
    async (req) => {
      const { id } = req.params
      const changed = await db.transaction(async (tx) => {
        const [row] = await tx
          .update(users)
          .set({ disabledAt: null })
          .where(and(eq(users.id, id), isNotNull(users.disabledAt)))
          .returning({ id: users.id, email: users.email })
        if (row) await audit(tx, { action: 'admin.user_enabled', actorUserId: req.user!.id, targetType: 'user', targetId: id, metadata: { email: row.email } }, req)
        return row !== undefined
      })
      if (!changed) await getUser(id)
      return { id, disabledAt: null, outcome: changed ? ('done' as const) : ('already_done' as const) }
    },
  )

  fastify.post(
    '/:id/revoke-sessions',
    {
      schema: {
        tags,
        summary: 'End every session of a user now, without disabling them (API keys keep working; they may log in again)',
        params: IdParams,
        response: { 200: RevokeSessionsResult, ...errors },
      },
    },
    async (req) => {
      const { id } = req.params
      const at = new Date()
      const revoked = await db.transaction(async (tx) => {
        const [row] = await tx.update(users).set({ sessionsRevokedAt: at }).where(eq(users.id, id)).returning({ id: users.id, email: users.email })
        if (row)
          await audit(tx, { action: 'admin.user_sessions_revoked', actorUserId: req.user!.id, targetType: 'user', targetId: id, metadata: { email: row.email } }, req)
        return row !== undefined
      })
      if (!revoked) throw notFound('USER_NOT_FOUND', `no user ${id}`)
      // After commit: every process ends the user's sessions on their next request, not at its next re-read.
      await fastify.revokeUserSessions(id, at)
      return { id, sessionsRevokedAt: at.toISOString() }
    },
  )
}

export default userAdminRoutes
