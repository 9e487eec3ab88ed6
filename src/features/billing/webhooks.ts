/**
 * Stripe webhooks, applied exactly once and in Stripe's order.
 *
 * 1. Verify the signature on the raw body (bad or missing → 400 INVALID_SIGNATURE, nothing written).
 * What each event type does is its entry in STRIPE_EVENT_HANDLERS (stripe-events.ts): what to refetch,
 * how it applies, its follow-ups. This file is the engine around the table and knows no event type.
 *
 * 2. Outside any transaction: one read-only query (is the event already in the ledger? the subscription
 *    row's watermark), then the Stripe refetch the handler's rule asks for, if any. Stripe calls (20 s timeout, with
 *    retries) never hold a host connection or a row lock: slow Stripe must not drain the host pool that
 *    logins share.
 * 3. In ONE short host transaction: insert the event id into the ledger (a conflict means a duplicate
 *    delivery: answer 200 and change nothing), apply the state change with the watermark rule (the
 *    handler's `apply`), record processed | skipped | failed, and write a processed event's follow-up jobs
 *    (the handler's `followUps`: emails, suspension…) to the outbox: they commit with the change, so a Redis outage can delay them, never lose
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
import type { Outbox, OutboxRow } from '../../core/jobs/outbox.js'
import { AppError } from '../../core/lib/errors.js'
import { iso } from '../../core/lib/dates.js'
import { asDate, type Tx } from './audit.js'
import { parseVerifiedEvent, recordUnusableEvent, UnusableEvent } from './event-shape.js'
import { billingDisabled, isTransientStripeError } from './stripe.js'
import {
  type Handled,
  type HandlerContext,
  STRIPE_EVENT_HANDLERS,
  type StripeEventHandler,
  type StripeEventHandlers,
  wantsFetch,
} from './stripe-events.js'
import { type AppliedSubscription, createPlanLookup, type PlanLookup } from './subscriptions.js'

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
  /** Where a processed event's follow-up jobs (its handler's `followUps`) are written, in the event's transaction. */
  followUps?: {
    outbox: Pick<Outbox, 'write' | 'dispatch'>
  }
  /** The handler table (default STRIPE_EVENT_HANDLERS); the README's recipe test adds an entry this way. */
  handlers?: StripeEventHandlers
  log?: Pick<FastifyBaseLogger, 'info' | 'warn' | 'error'>
  /** Signature timestamp tolerance in seconds (Stripe's default 300). */
  toleranceS?: number
}

/** The event types billing handles: the keys of its handler table. */
export const HANDLED_EVENT_TYPES = Object.keys(STRIPE_EVENT_HANDLERS) as (keyof typeof STRIPE_EVENT_HANDLERS)[]

/** The table's entry for a type (own keys only), or undefined: an unhandled type is skipped. */
function handlerFor(handlers: StripeEventHandlers, type: string): StripeEventHandler | undefined {
  return Object.hasOwn(handlers, type) ? (handlers[type as Stripe.Event.Type] as StripeEventHandler) : undefined
}

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
  const handler = handlerFor(deps.handlers ?? STRIPE_EVENT_HANDLERS, event.type)

  const sql = deps.host.sql
  const pre = await precheck(sql, event, handler)
  if (pre.duplicate) return { status: 'duplicate', eventId: event.id, type: event.type }
  const fetched: Fetched = new Map()
  if (pre.fetch) fetched.set(pre.fetch, await retrieveSubscription(stripe, pre.fetch))
  const ctx: HandlerContext = {
    plans,
    oneTimePriceIds: deps.oneTimePriceIds ?? [],
    subscription(id) {
      const copy = fetched.get(id)
      if (!copy) throw new NeedsFetch(id)
      return copy
    },
  }

  let outcome: Handled | { status: 'duplicate' } | undefined
  let owed: OutboxRow[] = []
  for (let round = 0; outcome === undefined; round++) {
    try {
      outcome = await sql.begin(async (tx) => {
        if (!(await claimEvent(tx, event, raw))) return { status: 'duplicate' as const }
        const handled: Handled = handler ? await handler.apply(tx, event, ctx) : { status: 'skipped', reason: 'unhandled event type' }
        if (handled.status !== 'processed') {
          await tx`update core_stripe_webhook_events set status = ${handled.status}, error = ${handled.reason ?? null} where stripe_event_id = ${event.id}`
        } else if (deps.followUps && handler) {
          owed = await deps.followUps.outbox.write(tx, handler.followUps(billingEventOf(event, handled), event))
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

/**
 * One read-only round trip before any transaction: a delivery already in the ledger (and not failed) is a
 * duplicate, answered without Stripe calls; otherwise which subscription to refetch, by the handler's
 * rule (the one its `apply` follows: checkout always, invoice unless stale, subscription event on a tie).
 */
async function precheck(
  sql: postgres.Sql,
  event: Stripe.Event,
  handler: StripeEventHandler | undefined,
): Promise<{ duplicate: boolean; fetch: string | null }> {
  const subId = handler?.refetch?.subscription(event) ?? null
  const [r] = await sql<{ ledger: string | null; watermark: Date | string | null }[]>`
    select (select status from core_stripe_webhook_events where stripe_event_id = ${event.id}) as ledger,
           (select stripe_updated_at from core_subscriptions where stripe_subscription_id = ${subId ?? ''}) as watermark`
  if (r?.ledger && r.ledger !== 'failed') return { duplicate: true, fetch: null }
  if (!subId || !handler?.refetch) return { duplicate: false, fetch: null }
  const storedAt = r?.watermark ? Math.floor(asDate(r.watermark)!.getTime() / 1000) : null
  return { duplicate: false, fetch: wantsFetch(handler.refetch.when, storedAt, event.created) ? subId : null }
}

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
