/**
 * The account emails a request sends: each issues its single-use token (src/auth/user-tokens.ts) and
 * submits one `email.send` job (all mail goes through the queue). The link carries the token; the
 * front end posts it to the matching confirm route.
 */
import type { User } from '../../drizzle/host/schema.js'
import { emailChangeEmail, verifyEmail } from '../email/senders.js'
import type { JobSubmitter } from '../jobs/registry.js'
import { TOKEN_TTL, type UserTokens } from './user-tokens.js'

export interface AccountEmailDeps {
  userTokens: UserTokens
  tasks: Pick<JobSubmitter, 'submit'>
  appBaseUrl: string
}

const displayName = (user: Pick<User, 'name' | 'email'>) => user.name ?? user.email.split('@')[0]!

export const verifyEmailUrl = (appBaseUrl: string, token: string) => `${appBaseUrl}/verify-email?token=${token}`
export const emailChangeUrl = (appBaseUrl: string, token: string) => `${appBaseUrl}/confirm-email?token=${token}`

/** Mail `user` a link proving they own their current address. */
export async function sendVerificationEmail(deps: AccountEmailDeps, user: Pick<User, 'id' | 'name' | 'email'>) {
  const token = await deps.userTokens.issue({ userId: user.id, purpose: 'verify_email', email: user.email })
  await deps.tasks.submit(
    'email.send',
    verifyEmail({
      to: user.email,
      userName: displayName(user),
      verifyUrl: verifyEmailUrl(deps.appBaseUrl, token),
      expiresIn: TOKEN_TTL.verify_email.words,
    }),
  )
}

/** Mail `newEmail` a link that moves the account there (the change happens when it is used). */
export async function sendEmailChangeEmail(deps: AccountEmailDeps, user: Pick<User, 'id' | 'name' | 'email'>, newEmail: string) {
  const token = await deps.userTokens.issue({ userId: user.id, purpose: 'email_change', email: user.email, newEmail })
  await deps.tasks.submit(
    'email.send',
    emailChangeEmail({
      to: newEmail,
      userName: displayName(user),
      confirmUrl: emailChangeUrl(deps.appBaseUrl, token),
      oldEmail: user.email,
      expiresIn: TOKEN_TTL.email_change.words,
    }),
  )
}
