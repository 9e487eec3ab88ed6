/**
 * Billing's slow side effects, off the webhook's request path. The webhook writes `billing.event_effects`
 * to the outbox in the event's own transaction (`billingFollowUps`; job id derived from the Stripe event
 * id, so a redelivered or replayed event is one job), and the outbox submits it after commit, or later if
 * Redis was down (jobs/outbox.ts); that job then:
 *   - on invoice.payment_failed, mails every owner of the tenant through `email.send` (ids derived
 *     from this job: one mail per owner per event, however often the job retries);
 *   - when the subscription is past due (and BILLING_SUSPEND_AFTER_GRACE), schedules
 *     `billing.grace_check` for past_due_since + BILLING_GRACE_DAYS (id derived from the subscription
 *     and that date: one check per episode of non-payment);
 *   - when the subscription is active or trialing again, resumes a tenant billing suspended.
 *   - on checkout.session.async_payment_failed of a one-time purchase, and on
 *     customer.subscription.trial_will_end, mails every owner too (templates checkout_payment_failed and
 *     trial_will_end).
 * The grace check suspends the tenant (lifecycle 'suspended', audit reason billing) if the subscription
 * is still past due or unpaid and the tenant has no subscription that counts. See billing/suspension.ts.
 *
 * A paid one-time purchase (Checkout in payment mode) gets `billing.payment.fulfil`, written to the
 * outbox in the webhook's transaction with the checkout session id as its key: one job per purchase,
 * however many events say it was paid (completed, then async_payment_succeeded, redeliveries). Its
 * default handler records the purchase; THE PRODUCT'S FULFILMENT GOES THERE (see billingPaymentFulfil).
 */
import { and, asc, eq, sql } from 'drizzle-orm'
import { type Static, Type } from 'typebox'
import { auditLogs, memberships, pricingPlans, subscriptions, tenants, users } from '../../../drizzle/host/schema.js'
import { audit } from '../../core/lib/audit.js'
import { graceEndsAt } from './subscriptions.js'
import { resumeAfterPayment, subscriptionStanding, suspendForBilling, UNPAID_STATUSES } from './suspension.js'
import type { BillingEvent } from './webhooks.js'
import type { Config } from '../../core/config.js'
import type { HostDatabase } from '../../core/db/host.js'
import type { EmailMessage } from '../../core/email/message.js'
import { checkoutPaymentFailedEmail, paymentFailedEmail, trialWillEndEmail } from '../../core/email/senders.js'
import type { Provisioner } from '../../core/tenancy/provisioning.js'
import { type OutboxIntent, outboxJobId } from '../../core/jobs/outbox.js'
import { derivedJobId, type JobContext, type Jobs, systemJob, TenantIdSchema } from '../../core/jobs/registry.js'
import { Uuid } from '../../core/lib/schemas.js'

export interface BillingJobDeps {
  host: HostDatabase
  config: Pick<Config, 'appBaseUrl' | 'billingGraceDays' | 'billingSuspendAfterGrace'>
  provisioner: Pick<Provisioner, 'run'>
}

const NullableString = Type.Union([Type.String(), Type.Null()])

export const BillingEffectsPayload = Type.Object(
  {
    eventId: Type.String({ minLength: 1, maxLength: 255 }),
    type: Type.String({ minLength: 1, maxLength: 255 }),
    tenantId: TenantIdSchema,
    /** Our core_subscriptions id and the status the event left it in. */
    subscription: Type.Optional(Type.Object({ id: Uuid, status: Type.String(), planKey: NullableString }, { additionalProperties: false })),
    invoice: Type.Optional(
      Type.Object(
        { id: Type.String(), amountDue: Type.Integer(), currency: Type.String(), hostedInvoiceUrl: NullableString },
        { additionalProperties: false },
      ),
    ),
    /** A one-time purchase whose delayed payment failed. */
    payment: Type.Optional(
      Type.Object(
        { checkoutSessionId: Type.String(), amountTotal: Type.Union([Type.Integer(), Type.Null()]), currency: NullableString },
        { additionalProperties: false },
      ),
    ),
    /** trial_will_end: when the trial ends, and our subscription row (for the plan's name) when we have one. */
    trial: Type.Optional(
      Type.Object(
        { endsAt: Type.String({ format: 'date-time' }), subscriptionId: Type.Union([Uuid, Type.Null()]) },
        { additionalProperties: false },
      ),
    ),
  },
  { additionalProperties: false },
)
export type BillingEffects = Static<typeof BillingEffectsPayload>

export const GraceCheckPayload = Type.Object(
  { tenantId: TenantIdSchema, subscriptionId: Uuid, pastDueSince: Type.String({ format: 'date-time' }) },
  { additionalProperties: false },
)

export const PaymentFulfilPayload = Type.Object(
  {
    tenantId: TenantIdSchema,
    checkoutSessionId: Type.String({ minLength: 1, maxLength: 255 }),
    priceId: Type.String({ minLength: 1, maxLength: 255 }),
    quantity: Type.Integer({ minimum: 1 }),
    amountTotal: Type.Union([Type.Integer(), Type.Null()]),
    currency: NullableString,
    /** Who started the checkout (the session's metadata), if known. */
    userId: Type.Union([Uuid, Type.Null()]),
    /** The Stripe event that said it was paid (the first one: later ones are the same job). */
    eventId: Type.String({ minLength: 1, maxLength: 255 }),
  },
  { additionalProperties: false },
)
export type PaymentFulfilment = Static<typeof PaymentFulfilPayload>

/** A task manager built without the billing jobs' deps (e.g. startWorkers with a custom registry and no `deps: { host, config }`). */
class MissingBillingDeps extends Error {
  override name = 'MissingBillingDeps'
}
const isMissingDeps = (err: unknown) => err instanceof MissingBillingDeps

/** ctx.deps, checked: createServices provides host and config; a hand-built task manager must too. */
function billingDeps(ctx: JobContext<BillingJobDeps>): BillingJobDeps {
  const { host, config, provisioner } = (ctx.deps ?? {}) as Partial<BillingJobDeps>
  if (!host || !config || !provisioner) throw new MissingBillingDeps('billing jobs need deps.host, deps.config and deps.provisioner')
  return { host, config, provisioner }
}

const GOOD_STANDING = new Set(['active', 'trialing'])
/** The job id of an event's effects (the outbox derives it from the job name and the event id: the same in every process). */
export const effectsJobId = (stripeEventId: string) => outboxJobId('billing.event_effects', stripeEventId)

/** The job id of a one-time purchase's fulfilment: one per checkout session. */
export const fulfilJobId = (checkoutSessionId: string) => outboxJobId('billing.payment.fulfil', checkoutSessionId)

/**
 * What the webhook writes to the outbox for a processed event: its effects job, keyed by the event id,
 * if it has any; and for a paid one-time purchase its fulfilment, keyed by the checkout session id.
 */
export function billingFollowUps(e: BillingEvent): OutboxIntent[] {
  const intents: OutboxIntent[] = []
  const effects = billingEffectsFor(e)
  if (effects) intents.push({ job: 'billing.event_effects', payload: effects, key: e.eventId })
  const fulfilment = fulfilmentFor(e)
  if (fulfilment) intents.push({ job: 'billing.payment.fulfil', payload: fulfilment, key: fulfilment.checkoutSessionId })
  return intents
}

/** The fulfilment job's payload for a paid one-time purchase (the webhook checked its price is for sale), or null. */
export function fulfilmentFor(e: BillingEvent): PaymentFulfilment | null {
  const p = e.payment
  if (!e.tenantId || p?.outcome !== 'paid' || !p.priceId || !p.quantity) return null
  return {
    tenantId: e.tenantId,
    checkoutSessionId: p.checkoutSessionId,
    priceId: p.priceId,
    quantity: p.quantity,
    amountTotal: p.amountTotal,
    currency: p.currency,
    userId: p.userId,
    eventId: e.eventId,
  }
}

/**
 * The effects job's payload for a processed event, or null when it has no effects: a payment
 * failure, a past-due subscription, or a subscription (back) in good standing that may end a billing
 * suspension (new, changed status, or confirmed by checkout or a paid invoice).
 */
export function billingEffectsFor(e: BillingEvent): BillingEffects | null {
  if (!e.tenantId) return null
  const sub = e.subscription
  const wanted =
    e.type === 'invoice.payment_failed' ||
    e.payment?.outcome === 'failed' ||
    e.trial !== undefined ||
    (sub !== undefined &&
      (sub.status === 'past_due' ||
        (GOOD_STANDING.has(sub.status) &&
          (sub.created ||
            !GOOD_STANDING.has(sub.previousStatus ?? '') ||
            e.type === 'checkout.session.completed' ||
            e.type === 'invoice.paid'))))
  if (!wanted) return null
  return {
    eventId: e.eventId,
    type: e.type,
    tenantId: e.tenantId,
    ...(sub ? { subscription: { id: sub.id, status: sub.status, planKey: sub.planKey } } : {}),
    ...(e.invoice
      ? {
          invoice: {
            id: e.invoice.id,
            amountDue: e.invoice.amountDue,
            currency: e.invoice.currency,
            hostedInvoiceUrl: e.invoice.hostedInvoiceUrl,
          },
        }
      : {}),
    ...(e.payment?.outcome === 'failed'
      ? { payment: { checkoutSessionId: e.payment.checkoutSessionId, amountTotal: e.payment.amountTotal, currency: e.payment.currency } }
      : {}),
    ...(e.trial ? { trial: { endsAt: e.trial.endsAt.toISOString(), subscriptionId: e.trial.subscriptionId } } : {}),
  }
}

interface MailContext {
  to: string
  tenantName: string
  planName: string | null
  billingUrl: string
}

/** Mail every active owner of the tenant the message `build` makes (email.send ids derived from this job: once per owner). */
async function mailOwners(ctx: JobContext<BillingJobDeps>, p: BillingEffects, build: (m: MailContext) => EmailMessage) {
  const { host, config } = billingDeps(ctx)
  const subscriptionId = p.subscription?.id ?? p.trial?.subscriptionId ?? null
  const [tenant] = await host.db
    .select({ name: tenants.name, planName: pricingPlans.name })
    .from(tenants)
    .leftJoin(subscriptions, subscriptionId ? eq(subscriptions.id, subscriptionId) : sql`false`)
    .leftJoin(pricingPlans, eq(pricingPlans.id, subscriptions.planId))
    .where(eq(tenants.id, p.tenantId))
  if (!tenant) return 0
  const owners = await host.db
    .select({ userId: users.id, email: users.email })
    .from(memberships)
    .innerJoin(users, eq(users.id, memberships.userId))
    .where(and(eq(memberships.tenantId, p.tenantId), eq(memberships.role, 'owner'), eq(memberships.status, 'active')))
    .orderBy(asc(users.id))
  if (owners.length === 0) return 0
  const messages = owners.map((o) =>
    build({ to: o.email, tenantName: tenant.name, planName: tenant.planName, billingUrl: `${config.appBaseUrl}/billing` }),
  )
  await ctx.submitMany('email.send', messages, { ids: owners.map((o) => derivedJobId(ctx.jobId, `owner:${o.userId}`)) })
  return owners.length
}

export const billingEventEffects = systemJob({
  payload: BillingEffectsPayload,
  maxRetries: 5,
  backoff: { type: 'exponential', delayMs: 2000 },
  permanent: isMissingDeps,
  async process(ctx: JobContext<BillingJobDeps>, p) {
    const { host, config, provisioner } = billingDeps(ctx)
    const result: { mailed: number; graceCheck: string | null; resume: string | null } = { mailed: 0, graceCheck: null, resume: null }

    // The row as it is now (not as the event left it): a later event may already have moved it.
    const standing = p.subscription ? await subscriptionStanding(host, p.subscription.id) : undefined
    let suspendsAt: Date | null = null
    if (config.billingSuspendAfterGrace && standing?.status === 'past_due' && standing.pastDueSince) {
      suspendsAt = graceEndsAt(standing.pastDueSince, config.billingGraceDays)
      const since = standing.pastDueSince.toISOString()
      const job = await ctx.submit(
        'billing.grace_check',
        { tenantId: p.tenantId, subscriptionId: p.subscription!.id, pastDueSince: since },
        { id: derivedJobId(p.subscription!.id, `grace:${since}`), delayMs: Math.max(0, suspendsAt.getTime() - Date.now()) },
      )
      result.graceCheck = job.id
    }

    if (p.type === 'invoice.payment_failed') {
      const amount = p.invoice && p.invoice.amountDue > 0 ? { value: p.invoice.amountDue, currency: p.invoice.currency } : null
      result.mailed = await mailOwners(ctx, p, (m) => paymentFailedEmail({ ...m, amount, suspendsAt }))
    } else if (p.payment) {
      const { amountTotal, currency } = p.payment
      const amount = amountTotal && currency ? { value: amountTotal, currency } : null
      result.mailed = await mailOwners(ctx, p, (m) => checkoutPaymentFailedEmail({ ...m, amount }))
    } else if (p.trial) {
      const trialEnd = new Date(p.trial.endsAt)
      result.mailed = await mailOwners(ctx, p, (m) => trialWillEndEmail({ ...m, trialEnd }))
    }

    if (standing && GOOD_STANDING.has(standing.status)) {
      result.resume = await resumeAfterPayment({ host, provisioner, graceDays: config.billingGraceDays }, p.tenantId, {
        eventId: p.eventId,
        eventType: p.type,
        stripeSubscriptionId: standing.stripeSubscriptionId,
        status: standing.status,
      })
    }
    return result
  },
})

export const billingGraceCheck = systemJob({
  payload: GraceCheckPayload,
  maxRetries: 5,
  backoff: { type: 'exponential', delayMs: 5000 },
  permanent: isMissingDeps,
  async process(ctx: JobContext<BillingJobDeps>, p) {
    const { host, config, provisioner } = billingDeps(ctx)
    if (!config.billingSuspendAfterGrace) return { outcome: 'disabled' }
    const standing = await subscriptionStanding(host, p.subscriptionId)
    if (!standing || !(UNPAID_STATUSES as readonly string[]).includes(standing.status)) return { outcome: 'paid-or-ended' }
    const since = new Date(p.pastDueSince)
    // Paid and failed again since this check was scheduled: that episode has its own check.
    if (standing.status === 'past_due' && standing.pastDueSince && standing.pastDueSince.getTime() !== since.getTime()) {
      return { outcome: 'superseded' }
    }
    const endsAt = graceEndsAt(since, config.billingGraceDays)
    if (endsAt.getTime() > Date.now()) {
      // Ran early (clock skew between hosts, or the grace period was lengthened since): look again when it ends.
      const job = await ctx.submit('billing.grace_check', p, {
        id: derivedJobId(ctx.jobId, 'again'),
        delayMs: endsAt.getTime() - Date.now() + 1000,
      })
      return { outcome: 'rescheduled', jobId: job.id }
    }
    const outcome = await suspendForBilling({ host, provisioner, graceDays: config.billingGraceDays }, p.tenantId, {
      stripeSubscriptionId: standing.stripeSubscriptionId,
      status: standing.status,
      pastDueSince: p.pastDueSince,
      graceDays: config.billingGraceDays,
    })
    return { outcome }
  },
})

/**
 * A paid one-time purchase, once per checkout session. The default records it (audit
 * `billing.payment.fulfilled`, written once per session however often the job retries) and returns.
 *
 * ADD YOUR PRODUCT'S FULFILMENT HERE: grant the credits, seats or download the purchase stands for
 * (`p.priceId` × `p.quantity` for `p.tenantId`). Make it idempotent (the job runs at least once: key
 * your own writes by `p.checkoutSessionId`), and throw on a transient failure to be retried (5 times,
 * backing off). The webhook only enqueues this for a session that is paid and sells a price that is for
 * sale (STRIPE_ONE_TIME_PRICES or a plan's), so the checks are done by the time it runs.
 */
const PAYMENT_FULFILLED = 'billing.payment.fulfilled'

export const billingPaymentFulfil = systemJob({
  payload: PaymentFulfilPayload,
  maxRetries: 5,
  backoff: { type: 'exponential', delayMs: 2000 },
  permanent: isMissingDeps,
  async process(ctx: JobContext<BillingJobDeps>, p) {
    const { host } = billingDeps(ctx)
    const metadata = {
      priceId: p.priceId,
      quantity: p.quantity,
      amountTotal: p.amountTotal,
      currency: p.currency,
      eventId: p.eventId,
      jobId: ctx.jobId,
    }
    const recorded = await host.db.transaction(async (tx) => {
      const [done] = await tx
        .select({ id: auditLogs.id })
        .from(auditLogs)
        .where(and(eq(auditLogs.action, PAYMENT_FULFILLED), eq(auditLogs.targetId, p.checkoutSessionId)))
        .limit(1)
      if (done) return false
      // The buyer, if their account still exists.
      const [buyer] = p.userId ? await tx.select({ id: users.id }).from(users).where(eq(users.id, p.userId)) : []
      await audit(tx, {
        action: PAYMENT_FULFILLED,
        actorUserId: buyer?.id ?? null,
        tenantId: p.tenantId,
        targetType: 'checkout_session',
        targetId: p.checkoutSessionId,
        metadata,
      })
      return true
    })
    // Your fulfilment here (see above).
    return { recorded, checkoutSessionId: p.checkoutSessionId }
  },
})

export const BILLING_JOBS = {
  'billing.event_effects': billingEventEffects,
  'billing.grace_check': billingGraceCheck,
  'billing.payment.fulfil': billingPaymentFulfil,
}

declare module '../../core/jobs/registry.js' {
  interface JobTypes extends Jobs<typeof BILLING_JOBS> {}
}
