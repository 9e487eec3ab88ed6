/**
 * The Stripe events billing handles: one entry per event type in STRIPE_EVENT_HANDLERS, and nothing
 * else to edit. webhooks.ts is the engine around it (signature, ledger, ordering, outbox) and consults
 * no other list: a type without an entry is recorded `skipped` and answered 200.
 *
 * An entry says:
 *   refetch    which subscription Stripe must be asked for before the transaction, and when
 *              (`always`, `on-tie`, `unless-stale`; see RefetchRule). Stripe calls never run inside the
 *              ledger's transaction; `ctx.subscription(id)` inside `apply` returns what was fetched, and
 *              anything the rule didn't foresee is fetched by rolling back and running once more.
 *   apply      in the ledger's transaction: the state change and its audit rows; returns processed |
 *              skipped | failed (failed: a retry cannot help), and for processed what the follow-ups
 *              and onBillingEvent need (BillingEvent).
 *   followUps  the outbox jobs a processed event asks for, committed with the change.
 *
 * A new event is one entry here and one row in test/billing/event-handlers.test.ts (which also checks
 * the README's list): see README "Extending".
 */
import { eq } from 'drizzle-orm'
import type Stripe from 'stripe'
import { subscriptions, tenants } from '../../../drizzle/host/schema.js'
import { hostDbOn, type RawSql } from '../../core/db/host.js'
import type { OutboxIntent } from '../../core/jobs/outbox.js'
import { isUuid } from '../../core/lib/uuid.js'
import { type Tx, writeBillingAudit } from './audit.js'
import { billingFollowUps } from './jobs.js'
import { isSellableOnce, purchaseOf } from './one-time.js'
import { type ApplyOutcome, applySubscription, idOf, type PlanLookup, snapshotOf, subscriptionTenant } from './subscriptions.js'
import type { BillingEvent, OneTimePayment } from './webhooks.js'

/** The Stripe event of one type, with its `data.object` typed (Stripe's SDK discriminates on `type`). */
export type EventOf<T extends Stripe.Event.Type> = Extract<Stripe.Event, { type: T }>

/**
 * When the subscription's current copy is fetched from Stripe before the transaction:
 *   always        the event carries no subscription state (checkout sessions);
 *   on-tie        the event carries a snapshot, stale or newer except in the row's own second, when only
 *                 Stripe's current object can say which came last (subscription events);
 *   unless-stale  the event carries no snapshot and is applied as of its time unless the row is newer (invoices).
 */
export type RefetchRule = 'always' | 'on-tie' | 'unless-stale'

export interface Handled {
  status: 'processed' | 'skipped' | 'failed'
  reason?: string
  billing?: Omit<BillingEvent, 'eventId' | 'type' | 'occurredAt'>
}

export interface HandlerContext {
  plans: PlanLookup
  oneTimePriceIds: readonly string[]
  /** Stripe's copy of a subscription, fetched before the transaction (or why Stripe could not return it). */
  subscription(id: string): Stripe.Subscription | { missing: string }
}

// Method syntax on purpose: a handler typed for its own event is usable where any event is handled.
export interface StripeEventHandler<E extends Stripe.Event = Stripe.Event> {
  refetch?: { when: RefetchRule; subscription(event: E): string | null }
  apply(tx: Tx, event: E, ctx: HandlerContext): Promise<Handled>
  followUps(billing: BillingEvent, event: E): OutboxIntent[]
}

/** A handler table: event types are checked against Stripe's list, and each handler sees its own event's object. */
export type StripeEventHandlers = { [T in Stripe.Event.Type]?: StripeEventHandler<EventOf<T>> }

type CheckoutEvent = EventOf<'checkout.session.completed' | 'checkout.session.async_payment_succeeded' | 'checkout.session.async_payment_failed'>
type SubscriptionEvent = EventOf<'customer.subscription.created' | 'customer.subscription.updated' | 'customer.subscription.deleted'>
type InvoiceEvent = EventOf<'invoice.paid' | 'invoice.payment_failed'>

/** Checkout: the session says which subscription (subscription mode); the subscription object says what the tenant has. */
const checkoutSubscription = {
  when: 'always',
  subscription: (e: CheckoutEvent) => (e.data.object.mode === 'subscription' ? idOf(e.data.object.subscription) : null),
} as const
const subscriptionOnTie = { when: 'on-tie', subscription: (e: SubscriptionEvent) => e.data.object.id } as const
const invoiceSubscription = { when: 'unless-stale', subscription: (e: InvoiceEvent) => invoiceSubscriptionId(e.data.object) } as const

export const STRIPE_EVENT_HANDLERS = {
  'checkout.session.completed': { refetch: checkoutSubscription, apply: checkoutEvent, followUps: billingFollowUps },
  'checkout.session.async_payment_succeeded': { refetch: checkoutSubscription, apply: checkoutEvent, followUps: billingFollowUps },
  'checkout.session.async_payment_failed': { refetch: checkoutSubscription, apply: checkoutEvent, followUps: billingFollowUps },
  // Applies no state (it only mails the owners): nothing to fetch.
  'customer.subscription.trial_will_end': { apply: trialWillEnd, followUps: billingFollowUps },
  'customer.subscription.created': { refetch: subscriptionOnTie, apply: subscriptionChanged, followUps: billingFollowUps },
  'customer.subscription.updated': { refetch: subscriptionOnTie, apply: subscriptionChanged, followUps: billingFollowUps },
  'customer.subscription.deleted': { refetch: subscriptionOnTie, apply: subscriptionChanged, followUps: billingFollowUps },
  'invoice.paid': { refetch: invoiceSubscription, apply: invoiceSettled, followUps: billingFollowUps },
  'invoice.payment_failed': { refetch: invoiceSubscription, apply: invoiceSettled, followUps: billingFollowUps },
} satisfies StripeEventHandlers

export type HandledEventType = keyof typeof STRIPE_EVENT_HANDLERS

/** Whether the fetch rule asks for Stripe's copy, given the row's watermark (seconds, null: no row). */
export function wantsFetch(when: RefetchRule, storedAt: number | null, eventCreated: number): boolean {
  if (when === 'always') return true
  if (when === 'on-tie') return storedAt === eventCreated
  return storedAt === null || eventCreated >= storedAt
}

const audit = (event: Stripe.Event, reason: string) => ({ eventId: event.id, eventType: event.type, reason })

function fromOutcome(o: ApplyOutcome, what: string): Handled {
  switch (o.kind) {
    case 'applied':
      return { status: 'processed', billing: { tenantId: o.subscription.tenantId, subscription: o.subscription } }
    case 'stale':
      return { status: 'skipped', reason: `stale: ${what} already reflects ${new Date(o.storedAt * 1000).toISOString()}` }
    case 'no-tenant':
      return { status: 'failed', reason: `no tenant for ${what} (metadata.tenant_id missing or unknown)` }
    case 'tie':
      throw new Error('unreachable: a tie is resolved by refetching')
  }
}

async function subscriptionChanged(tx: Tx, event: SubscriptionEvent, ctx: HandlerContext): Promise<Handled> {
  const sub = event.data.object
  const base = { at: event.created, plans: ctx.plans, audit: audit(event, event.type) }
  const outcome = await applySubscription(tx, { ...base, snapshot: snapshotOf(sub), source: 'event' })
  if (outcome.kind !== 'tie') return fromOutcome(outcome, `subscription ${sub.id}`)
  // Same second as the stored state: which came last is unknowable from timestamps; Stripe's current object decides.
  const fetched = ctx.subscription(sub.id)
  if ('missing' in fetched) return { status: 'failed', reason: fetched.missing }
  const refetched = await applySubscription(tx, {
    ...base,
    snapshot: snapshotOf(fetched),
    source: 'fetched',
    audit: audit(event, `${event.type} (tie, refetched)`),
  })
  return fromOutcome(refetched, `subscription ${sub.id}`)
}

/** The subscription an invoice bills (API ≥ 2025-03-31 puts it under parent.subscription_details). */
export function invoiceSubscriptionId(invoice: Stripe.Invoice): string | null {
  const legacy = (invoice as unknown as { subscription?: string | { id: string } | null }).subscription
  return idOf(invoice.parent?.subscription_details?.subscription as string | { id: string } | undefined) ?? idOf(legacy)
}

/**
 * invoice.paid / invoice.payment_failed carry no subscription snapshot, so a delta applied to whatever
 * the row holds could skip a transition we haven't seen yet. Unless the event is older than the row
 * (stale), the subscription is refetched and applied as of the event's time; a payment failure dates
 * past_due_since.
 */
async function invoiceSettled(tx: Tx, event: InvoiceEvent, ctx: HandlerContext): Promise<Handled> {
  const invoice = event.data.object
  const subId = invoiceSubscriptionId(invoice)
  if (!subId) return { status: 'skipped', reason: 'invoice is not for a subscription' }
  const [row] = await hostDbOn(tx)
    .select({ stripeUpdatedAt: subscriptions.stripeUpdatedAt })
    .from(subscriptions)
    .where(eq(subscriptions.stripeSubscriptionId, subId))
  const storedAt = row?.stripeUpdatedAt
  if (storedAt && event.created < Math.floor(storedAt.getTime() / 1000)) {
    return { status: 'skipped', reason: `stale: subscription ${subId} already reflects ${storedAt.toISOString()}` }
  }
  const fetched = ctx.subscription(subId)
  if ('missing' in fetched) return { status: 'failed', reason: fetched.missing }
  const failed = event.type === 'invoice.payment_failed'
  const outcome = await applySubscription(tx, {
    snapshot: snapshotOf(fetched),
    at: event.created,
    source: 'fetched',
    pastDueAt: failed ? event.created : undefined,
    plans: ctx.plans,
    audit: audit(event, event.type),
  })
  const handled = fromOutcome(outcome, `subscription ${subId}`)
  if (handled.status !== 'processed' || outcome.kind !== 'applied') return handled
  const info = {
    id: invoice.id ?? '',
    amountDue: invoice.amount_due,
    amountPaid: invoice.amount_paid,
    currency: invoice.currency,
    hostedInvoiceUrl: invoice.hosted_invoice_url ?? null,
  }
  await writeBillingAudit(tx, {
    action: failed ? 'billing.invoice.payment_failed' : 'billing.invoice.paid',
    tenantId: outcome.subscription.tenantId,
    targetType: 'invoice',
    targetId: info.id,
    metadata: { ...info, stripeSubscriptionId: subId, eventId: event.id, attemptCount: invoice.attempt_count },
  })
  return { ...handled, billing: { ...handled.billing, tenantId: outcome.subscription.tenantId, invoice: info } }
}

/** The tenant a checkout session was started for (metadata first, client_reference_id as a fallback), if it exists. */
export async function checkoutTenant(tx: RawSql, session: Stripe.Checkout.Session): Promise<string | null> {
  for (const candidate of [session.metadata?.tenant_id, session.client_reference_id]) {
    if (!isUuid(candidate)) continue
    const [t] = await hostDbOn(tx).select({ id: tenants.id }).from(tenants).where(eq(tenants.id, candidate))
    if (t) return t.id
  }
  return null
}

/**
 * checkout.session.completed / async_payment_succeeded / async_payment_failed. Subscription mode: the
 * subscription object (fetched from Stripe) says what the tenant has, whatever the session's
 * payment_status; a delayed first payment that fails also sends invoice.payment_failed, which mails the
 * owners. Payment mode: see paymentCheckout.
 */
async function checkoutEvent(tx: Tx, event: CheckoutEvent, ctx: HandlerContext): Promise<Handled> {
  const session = event.data.object
  const tenantId = await checkoutTenant(tx, session)
  if (!tenantId) return { status: 'failed', reason: `checkout session ${session.id} names no known tenant` }
  if (session.mode === 'payment') return paymentCheckout(tx, event, session, tenantId, ctx)
  if (session.mode !== 'subscription') return { status: 'skipped', reason: `checkout session in ${session.mode} mode` }

  const customerId = idOf(session.customer as string | { id: string } | null)
  const userId = session.metadata?.user_id
  const subId = idOf(session.subscription as string | { id: string } | null)
  if (!subId) return { status: 'failed', reason: `checkout session ${session.id} has no subscription` }
  const fetched = ctx.subscription(subId)
  if ('missing' in fetched) return { status: 'failed', reason: fetched.missing }
  const outcome = await applySubscription(tx, {
    snapshot: snapshotOf(fetched),
    at: event.created,
    source: 'fetched',
    tenantId,
    userId,
    plans: ctx.plans,
    audit: { ...audit(event, event.type), actorUserId: isUuid(userId) ? userId : null },
  })
  await writeBillingAudit(tx, {
    action: `billing.checkout.${event.type.slice('checkout.session.'.length)}`,
    tenantId,
    actorUserId: isUuid(userId) ? userId : null,
    targetType: 'checkout_session',
    targetId: session.id,
    metadata: { stripeSubscriptionId: subId, stripeCustomerId: customerId, paymentStatus: session.payment_status, eventId: event.id },
  })
  if (outcome.kind === 'applied') return fromOutcome(outcome, `subscription ${subId}`)
  // The row already reflects a later event: the checkout itself is still recorded as processed.
  return { status: 'processed', billing: { tenantId } }
}

/** Money collected: paid, or nothing to pay (a 100 % discount). `unpaid` (a delayed payment method) is not. */
const isPaid = (session: Stripe.Checkout.Session) =>
  session.payment_status === 'paid' || session.payment_status === 'no_payment_required'

/**
 * A one-time purchase. Fulfilled (the `billing.payment.fulfil` job, through the outbox, keyed by the
 * session id so it runs once however many events say paid) only when the session is paid and sells a
 * price that is for sale (one-time.ts). A paid session that isn't sellable is recorded `failed` (a
 * dashboard "resend" after fixing STRIPE_ONE_TIME_PRICES processes it again) and audited
 * billing.payment.not_fulfilled, so an operator can refund it.
 */
async function paymentCheckout(
  tx: Tx,
  event: CheckoutEvent,
  session: Stripe.Checkout.Session,
  tenantId: string,
  ctx: HandlerContext,
): Promise<Handled> {
  const userId = session.metadata?.user_id
  const actorUserId = isUuid(userId) ? userId : null
  const purchase = purchaseOf(session.metadata)
  const outcome: OneTimePayment['outcome'] =
    event.type === 'checkout.session.async_payment_failed' ? 'failed' : isPaid(session) ? 'paid' : 'pending'
  const metadata = {
    amountTotal: session.amount_total,
    currency: session.currency,
    paymentStatus: session.payment_status,
    priceId: purchase?.priceId ?? null,
    quantity: purchase?.quantity ?? null,
    eventId: event.id,
    eventType: event.type,
  }
  const record = (action: `billing.${string}`, extra: Record<string, unknown> = {}) =>
    writeBillingAudit(tx, { action, tenantId, actorUserId, targetType: 'checkout_session', targetId: session.id, metadata: { ...metadata, ...extra } })

  if (outcome === 'paid') {
    const sellable = purchase && (await isSellableOnce(tx, purchase.priceId, ctx.oneTimePriceIds, ctx.plans))
    if (!sellable) {
      const reason = purchase
        ? `checkout session ${session.id} sells ${purchase.priceId}, which is not for sale (STRIPE_ONE_TIME_PRICES or a plan's price)`
        : `checkout session ${session.id} does not say what it sells (metadata price_id/quantity)`
      await record('billing.payment.not_fulfilled', { reason })
      return { status: 'failed', reason }
    }
  }
  await record(outcome === 'paid' ? 'billing.payment.completed' : outcome === 'pending' ? 'billing.payment.pending' : 'billing.payment.failed')
  return {
    status: 'processed',
    billing: {
      tenantId,
      payment: {
        checkoutSessionId: session.id,
        outcome,
        amountTotal: session.amount_total,
        currency: session.currency,
        priceId: purchase?.priceId ?? null,
        quantity: purchase?.quantity ?? null,
        userId: actorUserId,
      },
    },
  }
}

/**
 * customer.subscription.trial_will_end (three days before a trial ends): the owners are mailed (the
 * effects job, once per event). It applies no state: the subscription events carry that. Not mailed
 * when our row says the subscription is no longer trialing (the event arrived after the trial ended or
 * the subscription was canceled).
 */
async function trialWillEnd(tx: Tx, event: EventOf<'customer.subscription.trial_will_end'>): Promise<Handled> {
  const sub = event.data.object
  if (!sub.trial_end) return { status: 'skipped', reason: `subscription ${sub.id} has no trial end` }
  const [row] = await hostDbOn(tx)
    .select({ id: subscriptions.id, tenantId: subscriptions.tenantId, status: subscriptions.status })
    .from(subscriptions)
    .where(eq(subscriptions.stripeSubscriptionId, sub.id))
  if (row && row.status !== 'trialing') return { status: 'skipped', reason: `subscription ${sub.id} is ${row.status}, no longer trialing` }
  const tenantId = row?.tenantId ?? (await subscriptionTenant(tx, snapshotOf(sub)))
  if (!tenantId) return { status: 'failed', reason: `no tenant for subscription ${sub.id} (metadata.tenant_id missing or unknown)` }
  const endsAt = new Date(sub.trial_end * 1000)
  await writeBillingAudit(tx, {
    action: 'billing.subscription.trial_will_end',
    tenantId,
    targetType: 'subscription',
    targetId: row?.id ?? sub.id,
    metadata: { stripeSubscriptionId: sub.id, trialEnd: endsAt.toISOString(), eventId: event.id },
  })
  return { status: 'processed', billing: { tenantId, trial: { endsAt, subscriptionId: row?.id ?? null } } }
}
