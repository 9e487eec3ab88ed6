/**
 * The account emails a request sends: each issues its single-use token (src/core/identity/user-tokens.ts) and
 * submits one `email.send` job (all mail goes through the queue). The link carries the token; the
 * front end posts it to the matching confirm route. The link is sealed (src/core/email/sealed.ts) so the
 * job's record and Redis never hold a usable token in clear.
 */
import type { User } from '../../../drizzle/host/schema.js'
import type { Config } from '../../core/config.js'
import { sealVariables } from '../../core/email/sealed.js'
import { emailChangedEmail, emailChangeEmail, verifyEmail } from '../../core/email/senders.js'
import type { JobSubmitter } from '../../core/jobs/registry.js'
import { TOKEN_TTL, type UserTokens } from '../../core/identity/user-tokens.js'

export interface AccountEmailDeps {
  userTokens: UserTokens
  tasks: Pick<JobSubmitter, 'submit'>
  config: Pick<Config, 'appBaseUrl' | 'encryptionKeys'>
}

const displayName = (user: Pick<User, 'name' | 'email'>) => user.name ?? user.email.split('@')[0]!

export const verifyEmailUrl = (appBaseUrl: string, token: string) => `${appBaseUrl}/verify-email?token=${token}`
export const emailChangeUrl = (appBaseUrl: string, token: string) => `${appBaseUrl}/confirm-email?token=${token}`

/** Mail `user` a link proving they own their current address. */
export async function sendVerificationEmail(deps: AccountEmailDeps, user: Pick<User, 'id' | 'name' | 'email'>) {
  const token = await deps.userTokens.issue({ userId: user.id, purpose: 'verify_email', email: user.email })
  const message = verifyEmail({
    to: user.email,
    userName: displayName(user),
    verifyUrl: verifyEmailUrl(deps.config.appBaseUrl, token),
    expiresIn: TOKEN_TTL.verify_email.words,
  })
  await deps.tasks.submit('email.send', sealVariables(message, ['verify_url'], deps.config.encryptionKeys))
}

/** Mail `newEmail` a link that moves the account there (the change happens when it is used). */
export async function sendEmailChangeEmail(deps: AccountEmailDeps, user: Pick<User, 'id' | 'name' | 'email'>, newEmail: string) {
  const token = await deps.userTokens.issue({ userId: user.id, purpose: 'email_change', email: user.email, newEmail })
  const message = emailChangeEmail({
    to: newEmail,
    userName: displayName(user),
    confirmUrl: emailChangeUrl(deps.config.appBaseUrl, token),
    oldEmail: user.email,
    expiresIn: TOKEN_TTL.email_change.words,
  })
  await deps.tasks.submit('email.send', sealVariables(message, ['confirm_url'], deps.config.encryptionKeys))
}

/** After the change: tell the old address where the account went (a hijacker can't move it silently). */
export async function sendEmailChangedNotice(deps: Pick<AccountEmailDeps, 'tasks'>, user: Pick<User, 'name' | 'email'>, oldEmail: string) {
  await deps.tasks.submit('email.send', emailChangedEmail({ to: oldEmail, userName: displayName(user), newEmail: user.email }))
}
