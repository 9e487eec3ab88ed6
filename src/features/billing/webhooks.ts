/**
 * Stripe webhooks, applied exactly once and in Stripe's order.
 *
 * 1. Verify the signature on the raw body (bad or missing → 400 INVALID_SIGNATURE, nothing written).
 * 2. Outside any transaction: one read-only query (is the event already in the ledger? the subscription
 *    row's watermark), then the Stripe refetch the event needs, if any. Stripe calls (20 s timeout, with
 *    retries) never hold a host connection or a row lock: slow Stripe must not drain the host pool that
 *    logins share.
 * 3. In ONE short host transaction: insert the event id into the ledger (a conflict means a duplicate
 *    delivery: answer 200 and change nothing), apply the state change with the watermark rule, record
 *    processed | skipped | failed, and write a processed event's follow-up jobs (emails, suspension…) to
 *    the outbox (`followUps`): they commit with the change, so a Redis outage can delay them, never lose
 *    them. If the row moved meanwhile so that a refetch is now needed (a tie that wasn't one in step 2),
 *    the transaction rolls back, the object is fetched, and it runs once more.
 * 4. After commit: the outbox rows are dispatched in the background (never awaited: a Redis outage must
 *    not hold the answer; the outbox sweep submits them later), and `onBillingEvent` runs (cache
 *    invalidation).
 *
 * Anything transient (database, Stripe API during a refetch) throws: the transaction rolls back, the
 * route answers 5xx, the ledger keeps no row, and Stripe's retry is processed as if new. Conditions a
 * retry cannot fix (no tenant for a subscription, a subscription Stripe doesn't know) are recorded as
 * `failed` and answered 200; a later redelivery of a failed event (dashboard "resend") is reprocessed.
 */
import type { FastifyBaseLogger } from 'fastify'
import type postgres from 'postgres'
import Stripe from 'stripe'
import { uuidv7 } from 'uuidv7'
import type { HostDatabase } from '../../core/db/host.js'
import type { Outbox, OutboxIntent, OutboxRow } from '../../core/jobs/outbox.js'
import { AppError } from '../../core/lib/errors.js'
import { iso } from '../../core/lib/dates.js'
import { asDate, type Tx, writeBillingAudit } from './audit.js'
import { parseVerifiedEvent, recordUnusableEvent, UnusableEvent } from './event-shape.js'
import { isSellableOnce, purchaseOf } from './one-time.js'
import { isUuid } from '../../core/lib/uuid.js'
import { billingDisabled, isTransientStripeError } from './stripe.js'
import {
  type AppliedSubscription,
  type ApplyOutcome,
  applySubscription,
  createPlanLookup,
  idOf,
  type PlanLookup,
  snapshotOf,
  subscriptionTenant,
} from './subscriptions.js'

export type WebhookStatus = 'processed' | 'skipped' | 'failed' | 'duplicate'

export interface WebhookResult {
  status: WebhookStatus
  eventId: string
  type: string
  /** Why an event was skipped or failed (also stored in the ledger's `error` column). */
  reason?: string
}

/** Handed to `onBillingEvent` after a processed event committed. */
export interface BillingEvent {
  eventId: string
  type: string
  /** Stripe time of the event. */
  occurredAt: Date
  tenantId: string | null
  subscription?: AppliedSubscription
  /**
   * A payment-mode checkout event (one-time purchase). `paid`: the money is in (completed with
   * payment_status paid | no_payment_required, or async_payment_succeeded): fulfil it. `pending`: completed
   * with a delayed payment method, not paid yet. `failed`: async_payment_failed.
   */
  payment?: OneTimePayment
  /** customer.subscription.trial_will_end: when the trial ends, and our row of that subscription if we have it. */
  trial?: { endsAt: Date; subscriptionId: string | null }
  /** invoice.* events. */
  invoice?: { id: string; amountDue: number; amountPaid: number; currency: string; hostedInvoiceUrl: string | null }
}

export interface OneTimePayment {
  checkoutSessionId: string
  outcome: 'paid' | 'pending' | 'failed'
  amountTotal: number | null
  currency: string | null
  /** What was bought (the session's metadata, see one-time.ts); set whenever outcome is paid. */
  priceId: string | null
  quantity: number | null
  userId: string | null
}

export interface WebhookDeps {
  host: HostDatabase
  stripe: Stripe | undefined
  webhookSecret: string | undefined
  plans?: PlanLookup
  /** STRIPE_ONE_TIME_PRICES: besides plan prices, what a paid one-time checkout may be fulfilled for. */
  oneTimePriceIds?: readonly string[]
  /** Called once per processed event, after commit (cache invalidation); slow side effects go through followUps. */
  onBillingEvent?: (e: BillingEvent) => Promise<void>
  /** The jobs a processed event asks for (emails, tenant suspension), written to the outbox in the event's transaction. */
  followUps?: {
    intentsFor(e: BillingEvent): OutboxIntent[]
    outbox: Pick<Outbox, 'write' | 'dispatch'>
  }
  log?: Pick<FastifyBaseLogger, 'info' | 'warn' | 'error'>
  /** Signature timestamp tolerance in seconds (Stripe's default 300). */
  toleranceS?: number
}

interface Handled {
  status: 'processed' | 'skipped' | 'failed'
  reason?: string
  billing?: Omit<BillingEvent, 'eventId' | 'type' | 'occurredAt'>
}

/** Checkout events: a session completed (paid, or awaiting a delayed payment method), then that payment's outcome. */
const CHECKOUT_EVENT_TYPES: readonly string[] = [
  'checkout.session.completed',
  'checkout.session.async_payment_succeeded',
  'checkout.session.async_payment_failed',
]

export const HANDLED_EVENT_TYPES = [
  'checkout.session.completed',
  'checkout.session.async_payment_succeeded',
  'checkout.session.async_payment_failed',
  'customer.subscription.trial_will_end',
  'customer.subscription.created',
  'customer.subscription.updated',
  'customer.subscription.deleted',
  'invoice.paid',
  'invoice.payment_failed',
] as const

const planLookups = new WeakMap<object, PlanLookup>()

export function verifyStripeEvent(
  stripe: Stripe,
  rawBody: Buffer | string,
  signature: string | undefined,
  secret: string,
  toleranceS?: number,
): Stripe.Event {
  if (!signature) throw new AppError(400, 'INVALID_SIGNATURE', 'Missing Stripe-Signature header')
  try {
    stripe.webhooks.signature!.verifyHeader(rawBody, signature, secret, toleranceS ?? stripe.webhooks.DEFAULT_TOLERANCE)
  } catch {
    throw new AppError(400, 'INVALID_SIGNATURE', 'Stripe signature verification failed')
  }
  // Signed: what follows is about the content, never the signature (see event-shape.ts).
  return parseVerifiedEvent(typeof rawBody === 'string' ? rawBody : rawBody.toString('utf8'))
}

export async function processStripeEvent(
  deps: WebhookDeps,
  rawBody: Buffer | string,
  signature: string | undefined,
): Promise<WebhookResult> {
  const { stripe, webhookSecret } = deps
  if (!stripe || !webhookSecret) throw billingDisabled()
  const raw = typeof rawBody === 'string' ? rawBody : rawBody.toString('utf8')
  let event: Stripe.Event
  try {
    event = verifyStripeEvent(stripe, rawBody, signature, webhookSecret, deps.toleranceS)
  } catch (err) {
    if (!(err instanceof UnusableEvent)) throw err
    await recordUnusableEvent(deps.host.sql, raw, err)
    deps.log?.warn({ eventId: err.eventId, type: err.eventType, reason: err.reason }, 'stripe event could not be applied')
    return { status: 'failed', eventId: err.eventId, type: err.eventType, reason: err.reason }
  }
  const plans = deps.plans ?? cachedPlanLookup(deps)

  const sql = deps.host.sql
  const pre = await precheck(sql, event)
  if (pre.duplicate) return { status: 'duplicate', eventId: event.id, type: event.type }
  const fetched: Fetched = new Map()
  if (pre.fetch) fetched.set(pre.fetch, await retrieveSubscription(stripe, pre.fetch))

  let outcome: Handled | { status: 'duplicate' } | undefined
  let owed: OutboxRow[] = []
  for (let round = 0; outcome === undefined; round++) {
    try {
      outcome = await sql.begin(async (tx) => {
        if (!(await claimEvent(tx, event, raw))) return { status: 'duplicate' as const }
        const handled = await handle(tx, event, { plans, fetched, oneTimePriceIds: deps.oneTimePriceIds ?? [] })
        if (handled.status !== 'processed') {
          await tx`update core_stripe_webhook_events set status = ${handled.status}, error = ${handled.reason ?? null} where stripe_event_id = ${event.id}`
        } else if (deps.followUps) {
          owed = await deps.followUps.outbox.write(tx, deps.followUps.intentsFor(billingEventOf(event, handled)))
        }
        return handled
      })
    } catch (err) {
      // Rolled back (nothing claimed): fetch without the transaction, then apply again. One event names one subscription.
      if (!(err instanceof NeedsFetch) || round > 0) throw err
      fetched.set(err.subscriptionId, await retrieveSubscription(stripe, err.subscriptionId))
    }
  }

  const result: WebhookResult = { status: outcome.status, eventId: event.id, type: event.type }
  if ('reason' in outcome && outcome.reason) result.reason = outcome.reason
  if (outcome.status === 'failed')
    deps.log?.warn({ eventId: event.id, type: event.type, reason: result.reason }, 'stripe event could not be applied')

  if (owed.length > 0) void deps.followUps?.outbox.dispatch(owed)
  if (outcome.status === 'processed' && deps.onBillingEvent) {
    try {
      await deps.onBillingEvent(billingEventOf(event, outcome))
    } catch (err) {
      // The change is committed and Stripe must not retry it; the hook runs before the answer, so it must stay quick.
      deps.log?.error({ err, eventId: event.id }, 'onBillingEvent failed')
    }
  }
  return result
}

function billingEventOf(event: Stripe.Event, handled: Handled): BillingEvent {
  return { eventId: event.id, type: event.type, occurredAt: new Date(event.created * 1000), tenantId: null, ...handled.billing }
}

/**
 * Put the event in the ledger; false when it is already there. DO NOTHING (not DO UPDATE) keeps a
 * duplicate delivery read-only: no row lock, no WAL flush at commit. A previously `failed` event may be
 * redelivered (dashboard "resend") and is then claimed again, by exactly one of concurrent deliveries.
 */
async function claimEvent(tx: Tx, event: Stripe.Event, raw: string): Promise<boolean> {
  const [r] = await tx<{ inserted: string | null; existing: string | null }[]>`
    with ins as (
      insert into core_stripe_webhook_events (id, stripe_event_id, type, status, api_version, stripe_created_at, payload, processed_at)
      values (${uuidv7()}, ${event.id}, ${event.type}, 'processed', ${event.api_version}, ${iso(new Date(event.created * 1000))}, ${raw}::jsonb, now())
      on conflict (stripe_event_id) do nothing
      returning id
    )
    select (select id from ins) as inserted,
           (select status from core_stripe_webhook_events where stripe_event_id = ${event.id}) as existing`
  if (r?.inserted) return true
  if (r?.existing !== 'failed') return false
  const again = await tx`
    update core_stripe_webhook_events set status = 'processed', error = null, processed_at = now(), received_at = now()
    where stripe_event_id = ${event.id} and status = 'failed'
    returning id`
  return again.length > 0
}

function cachedPlanLookup(deps: WebhookDeps): PlanLookup {
  let lookup = planLookups.get(deps.host)
  if (!lookup) {
    lookup = createPlanLookup()
    planLookups.set(deps.host, lookup)
  }
  return lookup
}

/** Subscriptions retrieved from Stripe before the transaction (or the reason Stripe could not return one). */
type Fetched = Map<string, Stripe.Subscription | { missing: string }>

/** Thrown inside the transaction when Stripe's copy is needed but wasn't fetched: roll back, fetch, run again. */
class NeedsFetch extends Error {
  constructor(readonly subscriptionId: string) {
    super(`subscription ${subscriptionId} must be refetched outside the transaction`)
  }
}

interface HandleCtx {
  plans: PlanLookup
  fetched: Fetched
  oneTimePriceIds: readonly string[]
}

function fetchedCopy(ctx: HandleCtx, subscriptionId: string): Stripe.Subscription | { missing: string } {
  const copy = ctx.fetched.get(subscriptionId)
  if (!copy) throw new NeedsFetch(subscriptionId)
  return copy
}

/** The subscription an event applies, if any (checkout in subscription mode, subscription and invoice events). */
function subscriptionOf(event: Stripe.Event): string | null {
  if (CHECKOUT_EVENT_TYPES.includes(event.type)) {
    const session = event.data.object as Stripe.Checkout.Session
    return session.mode === 'subscription' ? idOf(session.subscription as string | { id: string } | null) : null
  }
  // trial_will_end applies no state (it only mails the owners): nothing to fetch.
  if (event.type === 'customer.subscription.trial_will_end') return null
  if (event.type.startsWith('customer.subscription.')) return (event.data.object as Stripe.Subscription).id
  if (event.type === 'invoice.paid' || event.type === 'invoice.payment_failed')
    return invoiceSubscriptionId(event.data.object as Stripe.Invoice)
  return null
}

/**
 * One read-only round trip before any transaction: a delivery already in the ledger (and not failed) is a
 * duplicate, answered without Stripe calls; otherwise which subscription to refetch, using the same
 * rules the handlers apply (checkout: always; invoice: unless stale; subscription event: on a tie).
 */
async function precheck(sql: postgres.Sql, event: Stripe.Event): Promise<{ duplicate: boolean; fetch: string | null }> {
  const subId = HANDLED_EVENT_TYPES.includes(event.type as (typeof HANDLED_EVENT_TYPES)[number]) ? subscriptionOf(event) : null
  const [r] = await sql<{ ledger: string | null; watermark: Date | string | null }[]>`
    select (select status from core_stripe_webhook_events where stripe_event_id = ${event.id}) as ledger,
           (select stripe_updated_at from core_subscriptions where stripe_subscription_id = ${subId ?? ''}) as watermark`
  if (r?.ledger && r.ledger !== 'failed') return { duplicate: true, fetch: null }
  if (!subId) return { duplicate: false, fetch: null }
  const storedAt = r?.watermark ? Math.floor(asDate(r.watermark)!.getTime() / 1000) : null
  if (CHECKOUT_EVENT_TYPES.includes(event.type)) return { duplicate: false, fetch: subId }
  if (event.type.startsWith('customer.subscription.')) return { duplicate: false, fetch: storedAt === event.created ? subId : null }
  return { duplicate: false, fetch: storedAt !== null && event.created < storedAt ? null : subId }
}

async function handle(tx: Tx, event: Stripe.Event, ctx: HandleCtx): Promise<Handled> {
  switch (event.type) {
    case 'checkout.session.completed':
    case 'checkout.session.async_payment_succeeded':
    case 'checkout.session.async_payment_failed':
      return checkoutEvent(tx, event, ctx)
    case 'customer.subscription.trial_will_end':
      return trialWillEnd(tx, event)
    case 'customer.subscription.created':
    case 'customer.subscription.updated':
    case 'customer.subscription.deleted':
      return subscriptionChanged(tx, event, ctx)
    case 'invoice.paid':
    case 'invoice.payment_failed':
      return invoiceSettled(tx, event, ctx)
    default:
      return { status: 'skipped', reason: 'unhandled event type' }
  }
}

const audit = (event: Stripe.Event, reason: string) => ({ eventId: event.id, eventType: event.type, reason })

/** Retrieve a subscription for a webhook (outside its transaction): transient failures answer 5xx, nothing recorded (Stripe retries). */
export async function retrieveSubscription(stripe: Stripe, id: string): Promise<Stripe.Subscription | { missing: string }> {
  try {
    return await stripe.subscriptions.retrieve(id)
  } catch (err) {
    if (isTransientStripeError(err)) throw new AppError(503, 'STRIPE_UNAVAILABLE', 'Stripe is unavailable, the event will be retried')
    if (err instanceof Stripe.errors.StripeError) return { missing: `Stripe could not return subscription ${id}: ${err.message}` }
    throw err
  }
}

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

async function subscriptionChanged(tx: Tx, event: Stripe.Event, ctx: HandleCtx): Promise<Handled> {
  const sub = event.data.object as Stripe.Subscription
  const base = { at: event.created, plans: ctx.plans, audit: audit(event, event.type) }
  const outcome = await applySubscription(tx, { ...base, snapshot: snapshotOf(sub), source: 'event' })
  if (outcome.kind !== 'tie') return fromOutcome(outcome, `subscription ${sub.id}`)
  // Same second as the stored state: which came last is unknowable from timestamps; Stripe's current object decides.
  const fetched = fetchedCopy(ctx, sub.id)
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
async function invoiceSettled(tx: Tx, event: Stripe.Event, ctx: HandleCtx): Promise<Handled> {
  const invoice = event.data.object as Stripe.Invoice
  const subId = invoiceSubscriptionId(invoice)
  if (!subId) return { status: 'skipped', reason: 'invoice is not for a subscription' }
  const [row] = await tx<
    { stripe_updated_at: Date | string }[]
  >`select stripe_updated_at from core_subscriptions where stripe_subscription_id = ${subId}`
  const storedAt = asDate(row?.stripe_updated_at)
  if (storedAt && event.created < Math.floor(storedAt.getTime() / 1000)) {
    return { status: 'skipped', reason: `stale: subscription ${subId} already reflects ${storedAt.toISOString()}` }
  }
  const fetched = fetchedCopy(ctx, subId)
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
export async function checkoutTenant(tx: Tx | postgres.Sql, session: Stripe.Checkout.Session): Promise<string | null> {
  for (const candidate of [session.metadata?.tenant_id, session.client_reference_id]) {
    if (!isUuid(candidate)) continue
    const [t] = await tx<{ id: string }[]>`select id from core_tenants where id = ${candidate}`
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
async function checkoutEvent(tx: Tx, event: Stripe.Event, ctx: HandleCtx): Promise<Handled> {
  const session = event.data.object as Stripe.Checkout.Session
  const tenantId = await checkoutTenant(tx, session)
  if (!tenantId) return { status: 'failed', reason: `checkout session ${session.id} names no known tenant` }
  if (session.mode === 'payment') return paymentCheckout(tx, event, session, tenantId, ctx)
  if (session.mode !== 'subscription') return { status: 'skipped', reason: `checkout session in ${session.mode} mode` }

  const customerId = idOf(session.customer as string | { id: string } | null)
  const userId = session.metadata?.user_id
  const subId = idOf(session.subscription as string | { id: string } | null)
  if (!subId) return { status: 'failed', reason: `checkout session ${session.id} has no subscription` }
  const fetched = fetchedCopy(ctx, subId)
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
  event: Stripe.Event,
  session: Stripe.Checkout.Session,
  tenantId: string,
  ctx: HandleCtx,
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
async function trialWillEnd(tx: Tx, event: Stripe.Event): Promise<Handled> {
  const sub = event.data.object as Stripe.Subscription
  if (!sub.trial_end) return { status: 'skipped', reason: `subscription ${sub.id} has no trial end` }
  const [row] = await tx<{ id: string; tenant_id: string; status: string }[]>`
    select id, tenant_id, status from core_subscriptions where stripe_subscription_id = ${sub.id}`
  if (row && row.status !== 'trialing') return { status: 'skipped', reason: `subscription ${sub.id} is ${row.status}, no longer trialing` }
  const tenantId = row?.tenant_id ?? (await subscriptionTenant(tx, snapshotOf(sub)))
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
