/**
 * The global user repository. Hot-path reads are prepared
 * statements: drizzle sends ad-hoc queries unprepared, which costs half the throughput (STACK.md §0).
 */
import { and, eq, exists, not, sql } from 'drizzle-orm'
import { memberships, type User, users } from '../../../drizzle/host/schema.js'
import type { HostDb } from '../db/host.js'
import { PG, conflict, forbidden, pgCode } from '../lib/errors.js'

/**
 * 403 EMAIL_NOT_VERIFIED for what an unverified account may not do yet: the caller's own address (with
 * how to verify it), or someone else's (`who`, e.g. "The member's").
 */
export const emailNotVerified = (who?: string) =>
  who
    ? forbidden('EMAIL_NOT_VERIFIED', `${who} email address must be verified first`)
    : forbidden(
        'EMAIL_NOT_VERIFIED',
        'Verify your email address first: use the link we sent you (POST /auth/verify-email/request sends it again)',
      )

/** 403 USER_DISABLED: a platform admin disabled the account (core_users.disabled_at); every login refuses it. */
export const userDisabled = () => forbidden('USER_DISABLED', 'This account is disabled; contact support')

export type PublicUser = Pick<User, 'id' | 'email' | 'name'> & { emailVerified: boolean; createdAt: string }

export const toPublicUser = (u: User): PublicUser => ({
  id: u.id,
  email: u.email,
  name: u.name,
  createdAt: u.createdAt.toISOString(),
  emailVerified: u.emailVerifiedAt !== null,
})

export function createUsersRepository(db: HostDb) {
  const byId = db
    .select()
    .from(users)
    .where(eq(users.id, sql.placeholder('id')))
    .prepare('users_by_id')
  const byEmail = db
    .select()
    .from(users)
    .where(eq(sql`lower(${users.email})`, sql`lower(${sql.placeholder('email')})`))
    .prepare('users_by_email')

  return {
    findById: async (id: string) => (await byId.execute({ id }))[0],
    findByEmail: async (email: string) => (await byEmail.execute({ email }))[0],

    /** Insert a user; a duplicate email (any case) is a 409. */
    async create(values: {
      email: string
      name?: string | null
      passwordHash?: string | null
      googleId?: string | null
      emailVerified?: boolean
    }) {
      try {
        const [user] = await db
          .insert(users)
          .values({
            email: values.email.trim(),
            name: values.name ?? null,
            passwordHash: values.passwordHash ?? null,
            googleId: values.googleId ?? null,
            emailVerifiedAt: values.emailVerified ? new Date() : null,
          })
          .returning()
        return user!
      } catch (err) {
        if (pgCode(err) === PG.uniqueViolation) throw conflict('EMAIL_TAKEN', 'An account with this email already exists')
        throw err
      }
    },

    /** Any membership row at all, whatever its status or its tenant's. */
    async hasMemberships(id: string) {
      return (await db.select({ one: sql`1` }).from(memberships).where(eq(memberships.userId, id)).limit(1)).length > 0
    },

    /** Undo a signup whose personal tenant never got registered: deletes the user only if no membership references it. */
    async deleteIfNoMemberships(id: string) {
      const anyMembership = db.select({ one: sql`1` }).from(memberships).where(eq(memberships.userId, id))
      const gone = await db
        .delete(users)
        .where(and(eq(users.id, id), not(exists(anyMembership))))
        .returning({ id: users.id })
      return gone.length === 1
    },

    async touchLogin(id: string) {
      await db.update(users).set({ lastLoginAt: new Date() }).where(eq(users.id, id))
    },

    async update(
      id: string,
      values: Partial<
        Pick<
          User,
          | 'name'
          | 'email'
          | 'googleId'
          | 'emailVerifiedAt'
          | 'passwordHash'
          | 'sessionsValidAfter'
          | 'sessionsRevokedAt'
          | 'activeTenantId'
          | 'deletedAt'
        >
      >,
    ) {
      const [user] = await db.update(users).set(values).where(eq(users.id, id)).returning()
      return user
    },
  }
}

export type UsersRepository = ReturnType<typeof createUsersRepository>
