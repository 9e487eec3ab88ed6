/**
 * The built-in emails as typed messages. Each `…Email(args)` builds the EmailMessage (what an email
 * job carries), and each `send…Email(mailer, args)` sends it directly. Seed vocabulary:
 * send_welcome_email, send_invitation_email, send_password_reset_email (+ verify email).
 * `app_name` comes from the mailer's default variables; `to_email` is always the recipient.
 */
import type { Mailer } from './mailer.js'
import type { EmailMessage } from './message.js'

export interface WelcomeEmail {
  to: string
  userName: string
  tenantName: string
  dashboardUrl: string
}

export interface InvitationEmail {
  to: string
  inviterName: string
  tenantName: string
  invitationUrl: string
  /** Human wording, e.g. "7 days". */
  expiresIn: string
}

export interface PasswordResetEmail {
  to: string
  userName: string
  resetUrl: string
  /** Human wording, e.g. "1 hour". */
  expiresIn: string
}

export interface VerifyEmail {
  to: string
  userName: string
  verifyUrl: string
  /** Human wording, e.g. "24 hours". */
  expiresIn: string
}

export const welcomeEmail = (a: WelcomeEmail): EmailMessage => ({
  to: a.to,
  template: 'welcome',
  variables: { user_name: a.userName, tenant_name: a.tenantName, dashboard_url: a.dashboardUrl },
})

export const invitationEmail = (a: InvitationEmail): EmailMessage => ({
  to: a.to,
  template: 'invitation',
  variables: { inviter_name: a.inviterName, tenant_name: a.tenantName, invitation_url: a.invitationUrl, expires_in: a.expiresIn },
})

export const passwordResetEmail = (a: PasswordResetEmail): EmailMessage => ({
  to: a.to,
  template: 'password_reset',
  variables: { user_name: a.userName, reset_url: a.resetUrl, expires_in: a.expiresIn },
})

export const verifyEmail = (a: VerifyEmail): EmailMessage => ({
  to: a.to,
  template: 'verify_email',
  variables: { user_name: a.userName, verify_url: a.verifyUrl, expires_in: a.expiresIn },
})

export const sendWelcomeEmail = (mailer: Mailer, a: WelcomeEmail) => mailer.sendEmail(welcomeEmail(a))
export const sendInvitationEmail = (mailer: Mailer, a: InvitationEmail) => mailer.sendEmail(invitationEmail(a))
export const sendPasswordResetEmail = (mailer: Mailer, a: PasswordResetEmail) => mailer.sendEmail(passwordResetEmail(a))
export const sendVerifyEmail = (mailer: Mailer, a: VerifyEmail) => mailer.sendEmail(verifyEmail(a))
