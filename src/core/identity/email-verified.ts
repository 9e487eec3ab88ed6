/**
 * "Has this person proven they own their email address?" is read from the host DB
 * (core_users.email_verified_at), never from the session's snapshot of the user, which may be up to
 * half a minute old. Actions that reach other people (inviting, accepting an invitation, being offered
 * ownership) need it: an unverified account may be a squatter on someone else's address.
 */
import type { User } from '../../../drizzle/host/schema.js'
import { emailNotVerified, type UsersRepository } from './users.js'

export const isEmailVerified = (user: Pick<User, 'emailVerifiedAt'> | undefined): boolean => !!user?.emailVerifiedAt

/** The user's current row, or 403 EMAIL_NOT_VERIFIED when their email is not verified (or the user is gone). */
export async function requireVerifiedUser(users: Pick<UsersRepository, 'findById'>, userId: string): Promise<User> {
  const user = await users.findById(userId)
  if (!user || !isEmailVerified(user)) throw emailNotVerified()
  return user
}
