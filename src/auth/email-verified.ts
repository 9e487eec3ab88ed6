/**
 * "Has this person proven they own their email address?" is read from the host DB
 * (core_users.email_verified_at), never from the session's snapshot of the user, which may be up to
 * half a minute old. Actions that reach other people (inviting, accepting an invitation, being offered
 * ownership) need it: an unverified account may be a squatter on someone else's address.
 */
import type { User } from '../../drizzle/host/schema.js'
import { forbidden } from '../lib/errors.js'
import { emailNotVerified as yourEmailNotVerified, type UsersRepository } from './users.js'

/** 403 EMAIL_NOT_VERIFIED: the caller's own address (with how to verify it, users.ts), or someone else's (`who`). */
export const emailNotVerified = (who?: string) =>
  who ? forbidden('EMAIL_NOT_VERIFIED', `${who} email address must be verified first`) : yourEmailNotVerified()

export const isEmailVerified = (user: Pick<User, 'emailVerifiedAt'> | undefined): boolean => !!user?.emailVerifiedAt

/** The user's current row, or 403 EMAIL_NOT_VERIFIED when their email is not verified (or the user is gone). */
export async function requireVerifiedUser(users: Pick<UsersRepository, 'findById'>, userId: string): Promise<User> {
  const user = await users.findById(userId)
  if (!user || !isEmailVerified(user)) throw emailNotVerified()
  return user
}
