/**
 * Platform administrators (/admin, e.g. Bull Board with every job payload). The source of truth is
 * core_users.is_platform_admin, set by an operator from the CLI (`users grant-admin <email>`).
 *
 * PLATFORM_ADMIN_EMAILS stays as a bootstrap convenience, but it only admits a user whose email is
 * VERIFIED (email_verified_at set, e.g. by signing in with Google): password signup never verifies an
 * address, so trusting the email alone would let anyone who signs up as ops@… first into /admin.
 * The check reads the DB on every /admin request (few requests, one primary-key lookup), so a grant
 * or a revocation takes effect at once.
 */
import { and, asc, eq, inArray, isNotNull, or, sql } from 'drizzle-orm'
import { type User, users } from '../../../drizzle/host/schema.js'
import type { HostDb } from '../db/host.js'
import { audit } from '../lib/audit.js'
import { notFound } from '../lib/errors.js'

type AdminFields = Pick<User, 'email' | 'emailVerifiedAt' | 'isPlatformAdmin'>

/** Admitted by the bootstrap list: a verified email that PLATFORM_ADMIN_EMAILS names (lower-cased). */
export const isBootstrapAdmin = (user: AdminFields, bootstrapEmails: readonly string[]): boolean =>
  user.emailVerifiedAt !== null && bootstrapEmails.includes(user.email.toLowerCase())

export const isPlatformAdmin = (user: AdminFields, bootstrapEmails: readonly string[]): boolean =>
  user.isPlatformAdmin || isBootstrapAdmin(user, bootstrapEmails)

export interface PlatformAdminView {
  id: string
  email: string
  emailVerified: boolean
  /** 'granted' (is_platform_admin), 'PLATFORM_ADMIN_EMAILS' (verified bootstrap email), or both. */
  sources: ('granted' | 'PLATFORM_ADMIN_EMAILS')[]
}

export function createPlatformAdmins(db: HostDb, bootstrapEmails: readonly string[]) {
  async function set(email: string, value: boolean): Promise<User> {
    const [user] = await db
      .update(users)
      .set({ isPlatformAdmin: value })
      .where(eq(sql`lower(${users.email})`, email.trim().toLowerCase()))
      .returning()
    if (!user) throw notFound('UNKNOWN_USER', `no user with email ${email}`)
    await audit(db, {
      action: value ? 'admin.platform_admin_granted' : 'admin.platform_admin_revoked',
      targetType: 'user',
      targetId: user.id,
      metadata: { email: user.email, via: 'cli' },
    })
    return user
  }

  return {
    grant: (email: string) => set(email, true),
    revoke: (email: string) => set(email, false),

    /** Everyone /admin admits right now, by email. */
    async list(): Promise<PlatformAdminView[]> {
      const bootstrap = bootstrapEmails.length
        ? and(isNotNull(users.emailVerifiedAt), inArray(sql`lower(${users.email})`, [...bootstrapEmails]))
        : undefined
      const rows = await db
        .select()
        .from(users)
        .where(or(eq(users.isPlatformAdmin, true), bootstrap))
        .orderBy(asc(sql`lower(${users.email})`))
      return rows.map((u) => ({
        id: u.id,
        email: u.email,
        emailVerified: u.emailVerifiedAt !== null,
        sources: [
          ...(u.isPlatformAdmin ? (['granted'] as const) : []),
          ...(isBootstrapAdmin(u, bootstrapEmails) ? (['PLATFORM_ADMIN_EMAILS'] as const) : []),
        ],
      }))
    },
  }
}
