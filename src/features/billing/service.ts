/**
 * StripeService: what the /api/billing routes call for the resolved tenant. Checkout (subscription and
 * one-time), the Customer Portal, the tenant's subscription, cancel at period end, plan change with
 * proration, and the synchronous activation behind the checkout success redirect.
 *
 * Subscription state only ever lands through applySubscription (subscriptions.ts), the same code and
 * ordering rule as the webhooks: the success redirect doesn't wait for the webhook, and the webhook that
 * follows agrees with it.
 */
import { and, desc, eq, inArray, isNull, ne } from 'drizzle-orm'
import Stripe from 'stripe'
import { pricingPlans, subscriptions, tenants } from '../../../drizzle/host/schema.js'
import type { Config } from '../../core/config.js'
import type { HostDatabase } from '../../core/db/host.js'
import { AppError } from '../../core/lib/errors.js'
import { writeBillingAudit } from './audit.js'
import { getActiveSubscription } from './access.js'
import { isUuid } from '../../core/lib/uuid.js'
import { type BillingInterval, createPlansRepository, type PricingPlan, priceFor } from './plans.js'
import { createStripe, requireStripeSettings, type StripeSettings, stripeFailure } from './stripe.js'
import { applySubscription, createPlanLookup, findPlanItem, idOf, LIVE_STATUSES, type PlanLookup, snapshotOf } from './subscriptions.js'
import { isSellableOnce, PRICE_ID, purchaseMetadata } from './one-time.js'
import { checkoutTenant } from './stripe-events.js'

export interface BillingUser {
  id: string
  email: string
  name?: string | null
}

export interface SubscriptionView {
  id: string
  stripeSubscriptionId: string
  status: string
  /** Whether this subscription currently grants access (active, trialing, or past_due within the grace period). */
  active: boolean
  plan: { id: string; key: string; name: string } | null
  interval: string | null
  currentPeriodStart: Date | null
  currentPeriodEnd: Date | null
  trialEnd: Date | null
  cancelAtPeriodEnd: boolean
  canceledAt: Date | null
  pastDueSince: Date | null
}

export interface StripeServiceDeps {
  config: Pick<Config, 'stripe' | 'billingGraceDays'>
  host: HostDatabase
  /** A ready client (tests pass one with retries off); otherwise built from config.stripe on first use. */
  stripe?: Stripe
  plans?: PlanLookup
  /** Called after the service committed a change to the tenant's row (its plan tier): the app invalidates the catalog cache. */
  onTenantChanged?: (tenantId: string) => Promise<void>
}

type PlanChoice = { planKey: string; planId?: undefined } | { planId: string; planKey?: undefined }

export type StripeService = ReturnType<typeof createStripeService>

export function createStripeService(deps: StripeServiceDeps) {
  const repo = createPlansRepository(deps.host.db)
  const plans = deps.plans ?? createPlanLookup()
  const { sql, db } = deps.host
  let client = deps.stripe

  /** Every entry point starts here: 503 BILLING_DISABLED without Stripe settings. */
  function billing(): { stripe: Stripe; settings: StripeSettings } {
    const settings = requireStripeSettings(deps.config.stripe)
    client ??= createStripe(settings)
    return { stripe: client, settings }
  }

  async function callStripe<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn()
    } catch (err) {
      throw stripeFailure(err)
    }
  }

  /** A redirect URL must stay on our own site (no open redirects through Stripe). */
  function ownUrl(settings: StripeSettings, url: string | undefined, fallbackPath: string): string {
    if (!url) return `${settings.baseUrl}${fallbackPath}`
    let parsed: URL
    try {
      parsed = new URL(url, settings.baseUrl)
    } catch {
      throw new AppError(400, 'INVALID_REDIRECT_URL', 'Redirect URL is not a URL')
    }
    if (parsed.origin !== new URL(settings.baseUrl).origin)
      throw new AppError(400, 'INVALID_REDIRECT_URL', 'Redirect URL must be on this site')
    // Stripe substitutes {CHECKOUT_SESSION_ID}; URL serialisation would percent-encode the braces.
    return parsed.toString().replace('%7BCHECKOUT_SESSION_ID%7D', '{CHECKOUT_SESSION_ID}')
  }

  async function requireTenant(tenantId: string): Promise<void> {
    const [t] = isUuid(tenantId)
      ? await db
          .select({ id: tenants.id })
          .from(tenants)
          .where(and(eq(tenants.id, tenantId), ne(tenants.status, 'deleted')))
      : []
    if (!t) throw new AppError(404, 'TENANT_NOT_FOUND', 'Tenant not found')
  }

  async function choosePlan(choice: PlanChoice, interval: BillingInterval): Promise<{ plan: PricingPlan; price: string }> {
    const plan = choice.planId !== undefined ? await repo.getById(choice.planId) : await repo.getByKey(choice.planKey)
    if (!plan?.isActive) throw new AppError(404, 'PLAN_NOT_FOUND', 'No such plan')
    const price = priceFor(plan, interval)
    if (!price) throw new AppError(400, 'PLAN_INTERVAL_UNAVAILABLE', `Plan "${plan.key}" is not sold per ${interval}`)
    return { plan, price }
  }

  /**
   * The tenant's own Stripe customer (core_tenants.stripe_customer_id), created on first checkout. One
   * customer per TENANT, never a person's: a customer shared by two tenants would open one tenant's
   * invoices and subscriptions in the other's portal. The acting user is only the contact email.
   */
  async function ensureCustomer(stripe: Stripe, tenantId: string, user: BillingUser): Promise<string> {
    const [tenant] = await db
      .select({ name: tenants.name, stripeCustomerId: tenants.stripeCustomerId })
      .from(tenants)
      .where(eq(tenants.id, tenantId))
    if (!tenant) throw new AppError(404, 'TENANT_NOT_FOUND', 'Tenant not found')
    if (tenant.stripeCustomerId) return tenant.stripeCustomerId
    // Keyed by tenant: a double click, a retry or two admins at once create one customer, not two.
    const customer = await callStripe(() =>
      stripe.customers.create(
        { email: user.email, name: tenant.name, metadata: { tenant_id: tenantId, created_by_user_id: user.id } },
        { idempotencyKey: `tenantkit-tenant-customer-${tenantId}` },
      ),
    )
    return db.transaction(async (tx) => {
      const stored = await tx
        .update(tenants)
        .set({ stripeCustomerId: customer.id })
        .where(and(eq(tenants.id, tenantId), isNull(tenants.stripeCustomerId)))
        .returning({ id: tenants.id })
      if (stored.length === 0) {
        // A concurrent request stored one first (same customer unless Stripe's idempotency window passed): keep it.
        const [again] = await tx.select({ stripeCustomerId: tenants.stripeCustomerId }).from(tenants).where(eq(tenants.id, tenantId))
        if (again?.stripeCustomerId) return again.stripeCustomerId
        throw new AppError(404, 'TENANT_NOT_FOUND', 'Tenant not found')
      }
      await writeBillingAudit(tx, {
        action: 'billing.customer.created',
        tenantId,
        actorUserId: isUuid(user.id) ? user.id : null,
        targetType: 'tenant',
        targetId: tenantId,
        metadata: { stripeCustomerId: customer.id },
      })
      return customer.id
    })
  }

  async function tenantCustomer(tenantId: string): Promise<string | null> {
    if (!isUuid(tenantId)) return null
    const [row] = await db.select({ stripeCustomerId: tenants.stripeCustomerId }).from(tenants).where(eq(tenants.id, tenantId))
    return row?.stripeCustomerId ?? null
  }

  /** The subscription the tenant would manage: a live one first, else the most recent. */
  async function currentRow(tenantId: string) {
    if (!isUuid(tenantId)) return undefined
    const s = subscriptions
    const [row] = await db
      .select({
        id: s.id,
        stripeSubscriptionId: s.stripeSubscriptionId,
        status: s.status,
        stripeUpdatedAt: s.stripeUpdatedAt,
        planId: s.planId,
        planKey: pricingPlans.key,
        planName: pricingPlans.name,
        billingInterval: s.billingInterval,
        currentPeriodStart: s.currentPeriodStart,
        currentPeriodEnd: s.currentPeriodEnd,
        trialEnd: s.trialEnd,
        cancelAtPeriodEnd: s.cancelAtPeriodEnd,
        canceledAt: s.canceledAt,
        pastDueSince: s.pastDueSince,
      })
      .from(s)
      .leftJoin(pricingPlans, eq(pricingPlans.id, s.planId))
      .where(eq(s.tenantId, tenantId))
      .orderBy(desc(inArray(s.status, LIVE_STATUSES)), desc(s.stripeUpdatedAt))
      .limit(1)
    return row
  }

  async function getSubscription(tenantId: string): Promise<SubscriptionView | null> {
    billing()
    const row = await currentRow(tenantId)
    if (!row) return null
    const counting = await getActiveSubscription(deps.host, tenantId, { graceDays: deps.config.billingGraceDays })
    return {
      id: row.id,
      stripeSubscriptionId: row.stripeSubscriptionId,
      status: row.status,
      active: counting?.id === row.id,
      plan: row.planId && row.planKey && row.planName ? { id: row.planId, key: row.planKey, name: row.planName } : null,
      interval: row.billingInterval,
      currentPeriodStart: row.currentPeriodStart,
      currentPeriodEnd: row.currentPeriodEnd,
      trialEnd: row.trialEnd,
      cancelAtPeriodEnd: row.cancelAtPeriodEnd,
      canceledAt: row.canceledAt,
      pastDueSince: row.pastDueSince,
    }
  }

  async function liveRow(tenantId: string) {
    const row = await currentRow(tenantId)
    if (!row || !(LIVE_STATUSES as readonly string[]).includes(row.status))
      throw new AppError(404, 'NO_SUBSCRIPTION', 'This tenant has no active subscription')
    return row
  }

  /** Apply what Stripe returned for our own change, as of the row's watermark read before the call (a webhook that moved it meanwhile wins). */
  async function applyReturned(
    sub: Stripe.Subscription,
    watermark: Date,
    actorUserId: string | null,
    reason: string,
    tenantId: string,
  ) {
    // applySubscription takes the postgres.js transaction the webhooks open (see subscriptions.ts).
    await sql.begin((tx) =>
      applySubscription(tx, {
        snapshot: snapshotOf(sub),
        at: Math.floor(watermark.getTime() / 1000),
        source: 'fetched',
        tenantId,
        plans,
        audit: { reason, actorUserId },
      }),
    )
    await tenantChanged(tenantId)
  }

  /**
   * The item whose price changePlan swaps: the plan item, chosen as the webhooks choose it (the first item
   * whose price belongs to a known plan), never an add-on listed before it. A subscription with a single
   * item on a price no plan lists (a legacy price) still changes that item; with several, none is guessed.
   */
  async function planItemOf(sub: Stripe.Subscription): Promise<Stripe.SubscriptionItem | null> {
    const items = sub.items?.data ?? []
    const found = await findPlanItem(sql, items, (item) => item.price?.id ?? null, plans)
    if (found) return found.item
    if (items.length > 1) throw new AppError(409, 'NO_PLAN_ITEM', 'No item of this subscription belongs to a known plan')
    return items[0] ?? null
  }

  /** After a commit that may have changed core_tenants.plan_tier: drop cached catalog copies (webhooks do the same in onBillingEvent). */
  async function tenantChanged(tenantId: string) {
    await deps.onTenantChanged?.(tenantId)
  }

  return {
    async createSubscriptionCheckout(
      input: { tenantId: string; user: BillingUser; interval: BillingInterval; successUrl?: string; cancelUrl?: string } & PlanChoice,
    ): Promise<{ id: string; url: string }> {
      const { stripe, settings } = billing()
      await requireTenant(input.tenantId)
      const { plan, price } = await choosePlan(input, input.interval)
      if (await getActiveSubscription(deps.host, input.tenantId, { graceDays: deps.config.billingGraceDays })) {
        throw new AppError(409, 'ALREADY_SUBSCRIBED', 'This tenant already has a subscription; change its plan instead')
      }
      const customer = await ensureCustomer(stripe, input.tenantId, input.user)
      // Trial days come from the plan, once per tenant: a tenant that subscribed before doesn't get another trial.
      const [before] = await db.select({ id: subscriptions.id }).from(subscriptions).where(eq(subscriptions.tenantId, input.tenantId)).limit(1)
      const trialDays = before ? 0 : plan.trialDays
      const metadata = { tenant_id: input.tenantId, user_id: input.user.id, plan_key: plan.key }
      const session = await callStripe(() =>
        stripe.checkout.sessions.create({
          mode: 'subscription',
          customer,
          client_reference_id: input.tenantId,
          metadata,
          line_items: [{ price, quantity: 1 }],
          allow_promotion_codes: true,
          subscription_data: { metadata, ...(trialDays > 0 ? { trial_period_days: trialDays } : {}) },
          success_url: ownUrl(settings, input.successUrl, '/billing/success?session_id={CHECKOUT_SESSION_ID}'),
          cancel_url: ownUrl(settings, input.cancelUrl, '/billing/cancel'),
        }),
      )
      if (!session.url) throw new AppError(502, 'STRIPE_REQUEST_FAILED', 'Stripe returned a checkout session without a URL')
      return { id: session.id, url: session.url }
    },

    async createOneTimeCheckout(input: {
      tenantId: string
      user: BillingUser
      priceId: string
      quantity: number
      successUrl?: string
      cancelUrl?: string
    }): Promise<{ id: string; url: string }> {
      const { stripe, settings } = billing()
      if (!Number.isInteger(input.quantity) || input.quantity < 1 || input.quantity > 999) {
        throw new AppError(400, 'INVALID_QUANTITY', 'Quantity must be an integer between 1 and 999')
      }
      if (!PRICE_ID.test(input.priceId)) throw new AppError(400, 'INVALID_PRICE', 'Not a Stripe price id')
      // Only what the product sells (STRIPE_ONE_TIME_PRICES, or a plan's price): not any price of the Stripe account.
      if (!(await isSellableOnce(sql, input.priceId, settings.oneTimePriceIds, plans)))
        throw new AppError(400, 'PRICE_NOT_FOR_SALE', 'This price is not sold here')
      await requireTenant(input.tenantId)
      const customer = await ensureCustomer(stripe, input.tenantId, input.user)
      // The webhook reads what was bought from here (checkout events carry no line items): see one-time.ts.
      const metadata = purchaseMetadata({ tenantId: input.tenantId, userId: input.user.id, priceId: input.priceId, quantity: input.quantity })
      const session = await callStripe(() =>
        stripe.checkout.sessions.create({
          mode: 'payment',
          customer,
          client_reference_id: input.tenantId,
          metadata,
          line_items: [{ price: input.priceId, quantity: input.quantity }],
          allow_promotion_codes: true,
          payment_intent_data: { metadata },
          success_url: ownUrl(settings, input.successUrl, '/billing/success?session_id={CHECKOUT_SESSION_ID}'),
          cancel_url: ownUrl(settings, input.cancelUrl, '/billing/cancel'),
        }),
      )
      if (!session.url) throw new AppError(502, 'STRIPE_REQUEST_FAILED', 'Stripe returned a checkout session without a URL')
      return { id: session.id, url: session.url }
    },

    /** The Customer Portal of the tenant's own customer only (409 NO_BILLING_ACCOUNT before its first checkout). */
    async createPortalSession(input: { tenantId: string; returnUrl?: string }): Promise<{ url: string }> {
      const { stripe, settings } = billing()
      const customer = await tenantCustomer(input.tenantId)
      if (!customer) throw new AppError(409, 'NO_BILLING_ACCOUNT', 'This tenant has no billing account yet; start a checkout first')
      const portal = await callStripe(() =>
        stripe.billingPortal.sessions.create({ customer, return_url: ownUrl(settings, input.returnUrl, '/billing') }),
      )
      return { url: portal.url }
    },

    getSubscription,

    async cancelSubscription(input: { tenantId: string; actorUserId: string | null }): Promise<SubscriptionView | null> {
      const { stripe } = billing()
      const row = await liveRow(input.tenantId)
      const sub = await callStripe(() => stripe.subscriptions.update(row.stripeSubscriptionId, { cancel_at_period_end: true }))
      await audited(input.tenantId, input.actorUserId, 'billing.subscription.cancel_requested', row.id, { stripeSubscriptionId: sub.id })
      await applyReturned(sub, row.stripeUpdatedAt, input.actorUserId, 'cancel at period end', input.tenantId)
      return getSubscription(input.tenantId)
    },

    async changePlan(
      input: { tenantId: string; actorUserId: string | null; interval: BillingInterval } & PlanChoice,
    ): Promise<SubscriptionView | null> {
      const { stripe } = billing()
      const row = await liveRow(input.tenantId)
      const { plan, price } = await choosePlan(input, input.interval)
      const current = await callStripe(() => stripe.subscriptions.retrieve(row.stripeSubscriptionId))
      const item = await planItemOf(current)
      if (!item) throw new AppError(409, 'SUBSCRIPTION_HAS_NO_ITEMS', 'The subscription has no item to change')
      if (item.price.id === price) throw new AppError(409, 'ALREADY_ON_PLAN', `Already on ${plan.key} per ${input.interval}`)
      const sub = await callStripe(() =>
        stripe.subscriptions.update(row.stripeSubscriptionId, {
          items: [{ id: item.id, price }],
          proration_behavior: 'create_prorations',
          cancel_at_period_end: false,
          metadata: { plan_key: plan.key },
        }),
      )
      await audited(input.tenantId, input.actorUserId, 'billing.subscription.plan_change_requested', row.id, {
        stripeSubscriptionId: sub.id,
        fromPrice: item.price.id,
        toPrice: price,
        plan: plan.key,
      })
      await applyReturned(sub, row.stripeUpdatedAt, input.actorUserId, `plan change to ${plan.key}`, input.tenantId)
      return getSubscription(input.tenantId)
    },

    /** The checkout success redirect (see activateCheckout): the tenant's subscription once activated. */
    async activateFromCheckoutSession(sessionId: string, opts: { tenantId?: string } = {}): Promise<SubscriptionView | null> {
      return (await activateCheckout(sessionId, opts)).subscription
    },

    /** activateFromCheckoutSession, also naming the tenant (what GET /billing/success answers). */
    activateCheckout,
  }

  /**
   * The checkout success redirect: read the session and its subscription from Stripe and apply them now.
   * Stamped with the subscription's creation time, so every webhook about it still applies (or ties and refetches).
   */
  async function activateCheckout(
    sessionId: string,
    /** tenantId: the session must be this tenant's; mayManage: the caller must be allowed to manage the session's tenant. */
    opts: { tenantId?: string; mayManage?: (tenantId: string) => Promise<boolean> } = {},
  ): Promise<{ tenantId: string; subscription: SubscriptionView | null }> {
    const { stripe } = billing()
    if (!/^cs_[A-Za-z0-9_]+$/.test(sessionId)) throw new AppError(400, 'INVALID_CHECKOUT_SESSION', 'Not a checkout session id')
    let session: Stripe.Checkout.Session
    try {
      session = await stripe.checkout.sessions.retrieve(sessionId)
    } catch (err) {
      if (err instanceof Stripe.errors.StripeInvalidRequestError && err.statusCode === 404) {
        throw new AppError(404, 'CHECKOUT_SESSION_NOT_FOUND', 'No such checkout session')
      }
      throw stripeFailure(err)
    }
    if (session.mode !== 'subscription')
      throw new AppError(400, 'NOT_A_SUBSCRIPTION_CHECKOUT', 'This checkout session is not for a subscription')
    const tenantId = await checkoutTenant(sql, session)
    if (!tenantId) throw new AppError(404, 'TENANT_NOT_FOUND', 'The checkout session names no known tenant')
    if ((opts.tenantId && opts.tenantId !== tenantId) || (opts.mayManage && !(await opts.mayManage(tenantId))))
      throw new AppError(403, 'CHECKOUT_TENANT_MISMATCH', 'This checkout session belongs to another tenant')
    if (session.status !== 'complete') throw new AppError(409, 'CHECKOUT_NOT_COMPLETE', 'The checkout session is not complete')
    const subId = idOf(session.subscription as string | { id: string } | null)
    if (!subId) throw new AppError(409, 'CHECKOUT_NOT_COMPLETE', 'The checkout session has no subscription yet')
    const sub = await callStripe(() => stripe.subscriptions.retrieve(subId))
    const userId = session.metadata?.user_id
    await sql.begin((tx) =>
      applySubscription(tx, {
        snapshot: snapshotOf(sub),
        at: sub.created,
        source: 'fetched',
        tenantId,
        userId,
        plans,
        audit: { reason: 'checkout success redirect', actorUserId: isUuid(userId) ? userId : null },
      }),
    )
    await tenantChanged(tenantId)
    return { tenantId, subscription: await getSubscription(tenantId) }
  }

  async function audited(
    tenantId: string,
    actorUserId: string | null,
    action: `billing.${string}`,
    targetId: string,
    metadata: Record<string, unknown>,
  ) {
    await writeBillingAudit(db, { action, tenantId, actorUserId, targetType: 'subscription', targetId, metadata })
  }
}
