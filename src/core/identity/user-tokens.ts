/**
 * Single-use tokens mailed to a user: verify an address, reset a password, move the account to a new
 * address. The token is `<prefix>_<32 random bytes, base64url>`; the host DB keeps only its SHA-256
 * (256 random bits need no slow hash), the address it was mailed to, an expiry and when it was used.
 *
 * `consume` is one UPDATE … WHERE unused AND unexpired RETURNING, so two concurrent uses can't both win;
 * when it matches nothing, a second read says why, and every reason has its own code:
 *   400 TOKEN_MALFORMED   not a token of this purpose's shape (nothing is looked up)
 *   404 TOKEN_NOT_FOUND   no such token for this purpose
 *   410 TOKEN_EXPIRED     past its expiry
 *   409 TOKEN_USED        already used, or superseded (another token of the same purpose was used)
 *   409 TOKEN_STALE       mailed to an address the account no longer has
 * Using a token voids the user's other unused tokens of the same purpose (a reset link mailed twice
 * works once).
 */
import { randomBytes } from 'node:crypto'
import { and, eq, isNull, ne, sql } from 'drizzle-orm'
import { type UserToken, type UserTokenPurpose, userTokens, users } from '../../../drizzle/host/schema.js'
import type { HostDb } from '../db/host.js'
import { AppError, badRequest, conflict, notFound } from '../lib/errors.js'
import { hashToken } from '../lib/tokens.js'

export const TOKEN_PREFIX: Record<UserTokenPurpose, string> = {
  verify_email: 'tkv',
  password_reset: 'tkr',
  email_change: 'tke',
}

/** How long each kind of token lives, in minutes, and how the email words it. */
export const TOKEN_TTL: Record<UserTokenPurpose, { minutes: number; words: string }> = {
  verify_email: { minutes: 24 * 60, words: '24 hours' },
  password_reset: { minutes: 30, words: '30 minutes' },
  email_change: { minutes: 24 * 60, words: '24 hours' },
}

const SECRET_CHARS = 43 // 32 bytes of base64url
/** The one SHA-256 of single-use tokens (src/core/lib/tokens.ts), shared with invitations. */
export { hashToken }
const shapeOf = (purpose: UserTokenPurpose) => new RegExp(`^${TOKEN_PREFIX[purpose]}_[A-Za-z0-9_-]{${SECRET_CHARS}}$`)
const SHAPES = Object.fromEntries(Object.keys(TOKEN_PREFIX).map((p) => [p, shapeOf(p as UserTokenPurpose)])) as Record<
  UserTokenPurpose,
  RegExp
>

export function createUserTokens(db: HostDb) {
  return {
    /** A new token for `userId`, mailed to `email`; the secret is in the result and nowhere else. */
    async issue(values: { userId: string; purpose: UserTokenPurpose; email: string; newEmail?: string }): Promise<string> {
      const token = `${TOKEN_PREFIX[values.purpose]}_${randomBytes(32).toString('base64url')}`
      await db.insert(userTokens).values({
        userId: values.userId,
        purpose: values.purpose,
        tokenHash: hashToken(token),
        email: values.email,
        newEmail: values.newEmail ?? null,
        expiresAt: sql`now() + make_interval(mins => ${TOKEN_TTL[values.purpose].minutes})`,
      })
      return token
    },

    /**
     * Use a token once: returns its row (marked used), or throws one of the codes above. `tx` lets the
     * caller make the use and its effect one transaction (a failed effect leaves the token unused).
     */
    async consume(purpose: UserTokenPurpose, token: string, tx: HostDb = db): Promise<UserToken> {
      if (!SHAPES[purpose].test(token)) throw badRequest('TOKEN_MALFORMED', 'This is not a valid link: check that it was copied whole')
      const tokenHash = hashToken(token)
      const [used] = await tx
        .update(userTokens)
        .set({ usedAt: sql`now()` })
        .where(
          and(
            eq(userTokens.tokenHash, tokenHash),
            eq(userTokens.purpose, purpose),
            isNull(userTokens.usedAt),
            sql`${userTokens.expiresAt} > now()`,
            // Mailed to the address the account still has (an email_change token to the old one).
            sql`exists (select 1 from ${users} where ${users.id} = ${userTokens.userId} and lower(${users.email}) = lower(${userTokens.email}) and ${users.deletedAt} is null)`,
          ),
        )
        .returning()
      if (used) {
        // Every other open token of this purpose goes with it.
        await tx
          .update(userTokens)
          .set({ usedAt: sql`now()` })
          .where(
            and(eq(userTokens.userId, used.userId), eq(userTokens.purpose, purpose), isNull(userTokens.usedAt), ne(userTokens.id, used.id)),
          )
        return used
      }
      const [row] = await tx
        .select({ usedAt: userTokens.usedAt, expired: sql<boolean>`${userTokens.expiresAt} <= now()` })
        .from(userTokens)
        .where(and(eq(userTokens.tokenHash, tokenHash), eq(userTokens.purpose, purpose)))
      if (!row) throw notFound('TOKEN_NOT_FOUND', 'This link is not valid: request a new one')
      if (row.usedAt) throw conflict('TOKEN_USED', 'This link was already used: request a new one if needed')
      if (row.expired) throw new AppError(410, 'TOKEN_EXPIRED', 'This link has expired: request a new one')
      throw conflict('TOKEN_STALE', 'This link was sent to an address this account no longer uses')
    },
  }
}

export type UserTokens = ReturnType<typeof createUserTokens>
