/**
 * Account emails whose request must not reveal whether an address has an account.
 * `POST /auth/password-reset/request` only submits `auth.password_reset_request` with the address it
 * was given, the same for every address, so its answer and its timing carry nothing; this job then
 * looks the address up and, for a live account, issues the reset token and submits its `email.send`
 * (id derived from this job: one email however often the job retries).
 */
import { Type } from 'typebox'
import { createUsersRepository } from '../../core/identity/users.js'
import { createUserTokens, TOKEN_TTL } from '../../core/identity/user-tokens.js'
import type { Config } from '../../core/config.js'
import type { HostDatabase } from '../../core/db/host.js'
import { sealVariables } from '../../core/email/sealed.js'
import { passwordResetEmail } from '../../core/email/senders.js'
import { derivedJobId, type JobContext, systemJob, type Jobs } from '../../core/jobs/registry.js'

export interface AccountJobDeps {
  host: HostDatabase
  config: Pick<Config, 'appBaseUrl' | 'encryptionKeys'>
}

export const PasswordResetRequestPayload = Type.Object(
  { email: Type.String({ format: 'email', maxLength: 254 }) },
  { additionalProperties: false },
)

export const passwordResetUrl = (appBaseUrl: string, token: string) => `${appBaseUrl}/reset-password?token=${token}`

export const passwordResetRequest = systemJob({
  payload: PasswordResetRequestPayload,
  maxRetries: 3,
  async process(ctx: JobContext<AccountJobDeps>, { email }) {
    const { host, config } = ctx.deps
    const user = await createUsersRepository(host.db).findByEmail(email)
    if (!user || user.deletedAt) return { sent: false }
    const token = await createUserTokens(host.db).issue({ userId: user.id, purpose: 'password_reset', email: user.email })
    const message = passwordResetEmail({
      to: user.email,
      userName: user.name ?? user.email.split('@')[0]!,
      resetUrl: passwordResetUrl(config.appBaseUrl, token),
      expiresIn: TOKEN_TTL.password_reset.words,
    })
    // The link is the token: sealed, so the email job's record and Redis never hold it in clear.
    await ctx.submit('email.send', sealVariables(message, ['reset_url'], config.encryptionKeys), { id: derivedJobId(ctx.jobId, 'email') })
    return { sent: true }
  },
})

export const ACCOUNT_JOBS = {
  'auth.password_reset_request': passwordResetRequest,
}

declare module '../../core/jobs/registry.js' {
  interface JobTypes extends Jobs<typeof ACCOUNT_JOBS> {}
}
