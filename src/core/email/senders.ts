/**
 * The built-in emails as typed messages. Each `…Email(args)` builds the EmailMessage (what an email
 * job carries), and each `send…Email(mailer, args)` sends it directly.
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

/** After an email change: the notice to the old address (so a hijacked account doesn't move silently). */
export interface EmailChangedEmail {
  /** The old address. */
  to: string
  userName: string
  newEmail: string
}

/** To an admin offered ownership: the offer waits for them at `offerUrl`. */
export interface OwnershipOfferEmail {
  to: string
  userName: string
  offererName: string
  tenantName: string
  offerUrl: string
  expiresIn: string
}

export interface EmailChangeEmail {
  /** The new address (where the confirmation goes). */
  to: string
  userName: string
  oldEmail: string
  confirmUrl: string
  expiresIn: string
}

export interface MemberRemovedEmail {
  /** An owner of the tenant. */
  to: string
  memberEmail: string
  tenantName: string
  /** One sentence saying why. */
  reason: string
}

export interface PaymentFailedEmail {
  to: string
  tenantName: string
  /** The plan's display name, when known. */
  planName: string | null
  /** What was due, in the currency's smallest unit, when known. */
  amount: { value: number; currency: string } | null
  /** Where owners manage billing (`${APP_BASE_URL}/billing`). */
  billingUrl: string
  /** When the tenant will be suspended if still unpaid (null: it won't be). */
  suspendsAt: Date | null
}

/** "$29.00", "¥500", "29,00 €"-style amounts from Stripe's smallest-unit integers (zero-decimal currencies included). */
export function formatAmount(value: number, currency: string): string {
  const code = currency.toUpperCase()
  try {
    const format = new Intl.NumberFormat('en-US', { style: 'currency', currency: code })
    const digits = format.resolvedOptions().maximumFractionDigits ?? 2
    return format.format(value / 10 ** digits)
  } catch {
    return `${(value / 100).toFixed(2)} ${code}`
  }
}

export const paymentFailedEmail = (a: PaymentFailedEmail): EmailMessage => {
  const plan = a.planName ? `your ${a.planName} plan` : 'your subscription'
  const summary = a.amount
    ? `The payment of ${formatAmount(a.amount.value, a.amount.currency)} for ${plan} could not be collected.`
    : `The latest payment for ${plan} could not be collected.`
  const notice = a.suspendsAt
    ? `If the payment is still open on ${a.suspendsAt.toUTCString()}, ${a.tenantName} will be suspended until it is settled; nothing is deleted.`
    : `${a.tenantName} keeps working while the payment is retried.`
  return {
    to: a.to,
    template: 'payment_failed',
    variables: { tenant_name: a.tenantName, payment_summary: summary, billing_url: a.billingUrl, grace_notice: notice },
  }
}

export interface CheckoutPaymentFailedEmail {
  to: string
  tenantName: string
  /** What the purchase cost, in the currency's smallest unit, when known. */
  amount: { value: number; currency: string } | null
  billingUrl: string
}

/** A one-time purchase paid with a delayed method (bank debit…) whose payment failed (checkout.session.async_payment_failed). */
export const checkoutPaymentFailedEmail = (a: CheckoutPaymentFailedEmail): EmailMessage => ({
  to: a.to,
  template: 'checkout_payment_failed',
  variables: {
    tenant_name: a.tenantName,
    payment_summary: a.amount
      ? `The payment of ${formatAmount(a.amount.value, a.amount.currency)} for your purchase for ${a.tenantName} failed.`
      : `The payment for your purchase for ${a.tenantName} failed.`,
    billing_url: a.billingUrl,
  },
})

export interface TrialWillEndEmail {
  to: string
  tenantName: string
  /** The plan's display name, when known. */
  planName: string | null
  trialEnd: Date
  billingUrl: string
}

/** customer.subscription.trial_will_end: Stripe sends it three days before the trial ends. */
export const trialWillEndEmail = (a: TrialWillEndEmail): EmailMessage => {
  const day = a.trialEnd.toUTCString()
  return {
    to: a.to,
    template: 'trial_will_end',
    variables: {
      tenant_name: a.tenantName,
      trial_end: day,
      trial_summary: `The ${a.planName ? `${a.planName} ` : ''}trial of ${a.tenantName} ends on ${day}; the subscription then continues as a paid one, unless it is canceled before.`,
      billing_url: a.billingUrl,
    },
  }
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

export const emailChangeEmail = (a: EmailChangeEmail): EmailMessage => ({
  to: a.to,
  template: 'email_change',
  variables: { user_name: a.userName, old_email: a.oldEmail, confirm_url: a.confirmUrl, expires_in: a.expiresIn },
})

export const emailChangedEmail = (a: EmailChangedEmail): EmailMessage => ({
  to: a.to,
  template: 'email_changed',
  variables: { user_name: a.userName, new_email: a.newEmail },
})

export const ownershipOfferEmail = (a: OwnershipOfferEmail): EmailMessage => ({
  to: a.to,
  template: 'ownership_offer',
  variables: {
    user_name: a.userName,
    offerer_name: a.offererName,
    tenant_name: a.tenantName,
    offer_url: a.offerUrl,
    expires_in: a.expiresIn,
  },
})

export const memberRemovedEmail = (a: MemberRemovedEmail): EmailMessage => ({
  to: a.to,
  template: 'member_removed',
  variables: { member_email: a.memberEmail, tenant_name: a.tenantName, reason: a.reason },
})

export const sendWelcomeEmail = (mailer: Mailer, a: WelcomeEmail) => mailer.sendEmail(welcomeEmail(a))
export const sendInvitationEmail = (mailer: Mailer, a: InvitationEmail) => mailer.sendEmail(invitationEmail(a))
export const sendPasswordResetEmail = (mailer: Mailer, a: PasswordResetEmail) => mailer.sendEmail(passwordResetEmail(a))
export const sendVerifyEmail = (mailer: Mailer, a: VerifyEmail) => mailer.sendEmail(verifyEmail(a))
export const sendPaymentFailedEmail = (mailer: Mailer, a: PaymentFailedEmail) => mailer.sendEmail(paymentFailedEmail(a))
