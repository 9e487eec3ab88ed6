/**
 * StripeService through the real SDK and the fake Stripe: checkout parameters, customer reuse, the
 * synchronous activation on the success redirect and its agreement with the webhooks that follow,
 * one-time checkout, portal, cancel at period end, plan change with proration, and the error codes.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createStripeService, type StripeService } from '../../src/features/billing/service.js'
import { createTestEnv, type TestEnv } from '../helpers/test-env.js'
import {
  auditActions,
  type BillingWorld,
  ENT_MONTHLY,
  insertTenant,
  NOT_FOR_SALE,
  insertUser,
  PRO_MONTHLY,
  PRO_YEARLY,
  SEAT_PACK,
  startBillingWorld,
  subscriptionState,
} from './helpers.js'

let env: TestEnv
let w: BillingWorld
let svc: StripeService

beforeAll(async () => {
  env = await createTestEnv()
  w = await startBillingWorld(env)
  svc = createStripeService({ config: w.config, host: w.host, stripe: w.stripe })
})

afterAll(async () => {
  await w?.close()
  await env?.cleanup()
})

async function rejection(p: Promise<unknown>) {
  try {
    await p
  } catch (err) {
    return err as { statusCode: number; code: string }
  }
  throw new Error('expected a rejection')
}

async function subscribedTenant(planKey = 'pro') {
  const tenantId = await insertTenant(w.host, w.config)
  const user = await insertUser(w.host)
  const checkout = await svc.createSubscriptionCheckout({ tenantId, user, planKey, interval: 'month' })
  const { subscription } = w.fake.completeCheckout(checkout.id)
  await svc.activateFromCheckoutSession(checkout.id, { tenantId })
  return { tenantId, user, checkout, subscriptionId: subscription!.id as string }
}

describe('subscription checkout', () => {
  it('creates a Checkout Session with the plan price, trial days, promotion codes, tenant metadata and the tenant’s own new customer', async () => {
    const tenantId = await insertTenant(w.host, w.config)
    const user = await insertUser(w.host)
    const customersBefore = w.fake.count('POST', '/v1/customers')
    const { id, url } = await svc.createSubscriptionCheckout({ tenantId, user, planKey: 'pro', interval: 'year' })
    expect(url).toBe(`https://checkout.stripe.com/c/pay/${id}`)
    const session = w.fake.sessions.get(id)!
    expect(session._params).toMatchObject({
      mode: 'subscription',
      client_reference_id: tenantId,
      metadata: { tenant_id: tenantId, user_id: user.id, plan_key: 'pro' },
      line_items: [{ price: PRO_YEARLY, quantity: '1' }],
      allow_promotion_codes: 'true',
      subscription_data: { trial_period_days: '14', metadata: { tenant_id: tenantId, user_id: user.id } },
      success_url: 'http://localhost:3000/billing/success?session_id={CHECKOUT_SESSION_ID}',
      cancel_url: 'http://localhost:3000/billing/cancel',
    })
    expect(w.fake.count('POST', '/v1/customers')).toBe(customersBefore + 1)
    const [tenant] = await w.host.sql`select stripe_customer_id from core_tenants where id = ${tenantId}`
    expect(tenant!.stripe_customer_id).toBe(session.customer)
    // The acting user is the contact; the customer is the tenant's.
    expect(w.fake.customers.get(session.customer)).toMatchObject({ email: user.email, metadata: { tenant_id: tenantId } })
    expect(await w.host.sql`select 1 from information_schema.columns where table_name = 'core_users' and column_name = 'stripe_customer_id'`).toHaveLength(0)
    expect(await auditActions(w.host, tenantId)).toEqual(['billing.customer.created'])

    // The same tenant again (an abandoned checkout, another admin) reuses its customer.
    const again = await svc.createSubscriptionCheckout({ tenantId, user: await insertUser(w.host), planKey: 'pro', interval: 'month' })
    expect(w.fake.sessions.get(again.id)!.customer).toBe(session.customer)
    expect(w.fake.count('POST', '/v1/customers')).toBe(customersBefore + 1)

    // The same user checking out for another tenant gets that tenant's own customer, never this one.
    const other = await insertTenant(w.host, w.config)
    const elsewhere = await svc.createSubscriptionCheckout({ tenantId: other, user, planKey: 'pro', interval: 'month' })
    expect(w.fake.sessions.get(elsewhere.id)!.customer).not.toBe(session.customer)
    expect(w.fake.count('POST', '/v1/customers')).toBe(customersBefore + 2)
  })

  it('one trial per tenant: a tenant that had a subscription gets no trial on a later checkout', async () => {
    const { tenantId, user, checkout, subscriptionId } = await subscribedTenant()
    expect(w.fake.sessions.get(checkout.id)!._params.subscription_data).toMatchObject({ trial_period_days: '14' })
    // The trial subscription ends (canceled in Stripe, the webhook follows): the tenant may subscribe again.
    w.fake.now += 60
    const ended = w.fake.setSubscription(subscriptionId, { status: 'canceled', canceled_at: w.fake.now, ended_at: w.fake.now })
    expect((await w.deliver(w.fake.event('customer.subscription.deleted', ended))).body.status).toBe('processed')

    const again = await svc.createSubscriptionCheckout({ tenantId, user, planKey: 'pro', interval: 'month' })
    const params = w.fake.sessions.get(again.id)!._params
    expect(params.subscription_data).toMatchObject({ metadata: { tenant_id: tenantId } })
    expect(params.subscription_data).not.toHaveProperty('trial_period_days')
    // Another tenant of the same user is a new tenant: it still gets its trial.
    const other = await svc.createSubscriptionCheckout({ tenantId: await insertTenant(w.host, w.config), user, planKey: 'pro', interval: 'month' })
    expect(w.fake.sessions.get(other.id)!._params.subscription_data).toMatchObject({ trial_period_days: '14' })
  })

  it('concurrent first checkouts of one tenant create one customer (idempotency key per tenant) and both use it', async () => {
    const tenantId = await insertTenant(w.host, w.config)
    const [a, b] = [await insertUser(w.host), await insertUser(w.host)]
    const sessions = await Promise.all(
      [a, b].map((user) => svc.createSubscriptionCheckout({ tenantId, user, planKey: 'pro', interval: 'month' })),
    )
    const customers = sessions.map((s) => w.fake.sessions.get(s.id)!.customer)
    expect(customers[0]).toBe(customers[1])
    const creates = w.fake.requests.filter(
      (r) =>
        r.method === 'POST' &&
        r.path === '/v1/customers' &&
        (r.params.metadata as Record<string, string> | undefined)?.tenant_id === tenantId,
    )
    expect(new Set(creates.map((r) => r.idempotencyKey))).toEqual(new Set([`tenantkit-tenant-customer-${tenantId}`]))
    const [tenant] = await w.host.sql`select stripe_customer_id from core_tenants where id = ${tenantId}`
    expect(tenant!.stripe_customer_id).toBe(customers[0])
  })

  it('answers with stable codes for bad plans, intervals, tenants, redirects and Stripe outages', async () => {
    const tenantId = await insertTenant(w.host, w.config)
    const user = await insertUser(w.host)
    const base = { tenantId, user, interval: 'month' as const }
    expect(await rejection(svc.createSubscriptionCheckout({ ...base, planKey: 'nope' }))).toMatchObject({
      statusCode: 404,
      code: 'PLAN_NOT_FOUND',
    })
    expect(await rejection(svc.createSubscriptionCheckout({ ...base, planKey: 'free' }))).toMatchObject({
      statusCode: 400,
      code: 'PLAN_INTERVAL_UNAVAILABLE',
    })
    expect(await rejection(svc.createSubscriptionCheckout({ ...base, planKey: 'enterprise', interval: 'year' }))).toMatchObject({
      code: 'PLAN_INTERVAL_UNAVAILABLE',
    })
    expect(
      await rejection(svc.createSubscriptionCheckout({ ...base, tenantId: '00000000-0000-7000-8000-000000000000', planKey: 'pro' })),
    ).toMatchObject({
      statusCode: 404,
      code: 'TENANT_NOT_FOUND',
    })
    expect(
      await rejection(svc.createSubscriptionCheckout({ ...base, planKey: 'pro', successUrl: 'https://evil.example/x' })),
    ).toMatchObject({
      statusCode: 400,
      code: 'INVALID_REDIRECT_URL',
    })
    w.fake.fail('POST', /^\/v1\/checkout\/sessions$/, { status: 500 })
    expect(await rejection(svc.createSubscriptionCheckout({ ...base, planKey: 'pro' }))).toMatchObject({
      statusCode: 503,
      code: 'STRIPE_UNAVAILABLE',
    })
  })
})

describe('activation on the success redirect', () => {
  it('applies the subscription synchronously, and the webhooks that follow agree with it', async () => {
    const tenantId = await insertTenant(w.host, w.config)
    const user = await insertUser(w.host)
    const checkout = await svc.createSubscriptionCheckout({ tenantId, user, planKey: 'pro', interval: 'month' })
    expect(await rejection(svc.activateFromCheckoutSession(checkout.id, { tenantId }))).toMatchObject({
      statusCode: 409,
      code: 'CHECKOUT_NOT_COMPLETE',
    })

    const { session, subscription } = w.fake.completeCheckout(checkout.id)
    expect(await rejection(svc.activateFromCheckoutSession(checkout.id, { tenantId: await insertTenant(w.host, w.config) }))).toMatchObject(
      {
        statusCode: 403,
        code: 'CHECKOUT_TENANT_MISMATCH',
      },
    )
    const view = await svc.activateFromCheckoutSession(checkout.id, { tenantId })
    expect(view).toMatchObject({
      stripeSubscriptionId: subscription!.id,
      status: 'trialing',
      active: true,
      plan: { key: 'pro' },
      interval: 'month',
    })
    const activated = await subscriptionState(w.host, subscription!.id)

    // Stripe's webhooks arrive afterwards, in the same second: consistent, nothing regresses.
    expect((await w.deliver(w.fake.event('checkout.session.completed', session))).body.status).toBe('processed')
    expect((await w.deliver(w.fake.event('customer.subscription.created', subscription!))).body.status).toBe('processed')
    expect(await subscriptionState(w.host, subscription!.id)).toEqual(activated)
    expect((await auditActions(w.host, tenantId)).filter((a) => a === 'billing.subscription.created')).toHaveLength(1)

    // A later change in Stripe still applies.
    w.fake.now += 60
    w.fake.setSubscription(subscription!.id, { status: 'active', trial_end: w.fake.now })
    await w.deliver(w.fake.event('customer.subscription.updated', w.fake.subscriptions.get(subscription!.id)!))
    expect(await svc.getSubscription(tenantId)).toMatchObject({ status: 'active', active: true })
    expect(await rejection(svc.createSubscriptionCheckout({ tenantId, user, planKey: 'pro', interval: 'month' }))).toMatchObject({
      statusCode: 409,
      code: 'ALREADY_SUBSCRIBED',
    })
  })

  it('rejects unknown and malformed session ids', async () => {
    expect(await rejection(svc.activateFromCheckoutSession('cs_test_doesnotexist'))).toMatchObject({
      statusCode: 404,
      code: 'CHECKOUT_SESSION_NOT_FOUND',
    })
    expect(await rejection(svc.activateFromCheckoutSession('../../v1/customers'))).toMatchObject({
      statusCode: 400,
      code: 'INVALID_CHECKOUT_SESSION',
    })
  })
})

describe('managing a subscription', () => {
  it('cancel at period end: Stripe is told, the row follows, the audit log records who asked', async () => {
    const { tenantId, user, subscriptionId } = await subscribedTenant()
    const view = await svc.cancelSubscription({ tenantId, actorUserId: user.id })
    expect(w.fake.subscriptions.get(subscriptionId)!.cancel_at_period_end).toBe(true)
    expect(view).toMatchObject({ cancelAtPeriodEnd: true, active: true })
    expect(await auditActions(w.host, tenantId)).toEqual(expect.arrayContaining(['billing.subscription.cancel_requested']))
    const [who] = await w.host
      .sql`select actor_user_id from sys_audit_logs where tenant_id = ${tenantId} and action = 'billing.subscription.cancel_requested'`
    expect(who!.actor_user_id).toBe(user.id)
  })

  it('change plan: swaps the item price with prorations, and the tenant’s plan tier follows', async () => {
    const { tenantId, user, subscriptionId } = await subscribedTenant()
    const [before] = await w.host.sql`select plan_tier from core_tenants where id = ${tenantId}`
    expect(before!.plan_tier).toBe('pro')
    expect(await rejection(svc.changePlan({ tenantId, actorUserId: user.id, planKey: 'pro', interval: 'month' }))).toMatchObject({
      code: 'ALREADY_ON_PLAN',
    })

    const view = await svc.changePlan({ tenantId, actorUserId: user.id, planKey: 'enterprise', interval: 'month' })
    const update = w.fake.requests.filter((r) => r.method === 'POST' && r.path === `/v1/subscriptions/${subscriptionId}`).at(-1)!
    expect(update.params).toMatchObject({
      proration_behavior: 'create_prorations',
      items: [{ id: expect.stringMatching(/^si_/), price: ENT_MONTHLY }],
    })
    expect(view).toMatchObject({ plan: { key: 'enterprise' } })
    const [after] = await w.host.sql`select plan_tier from core_tenants where id = ${tenantId}`
    expect(after!.plan_tier).toBe('enterprise')
  })

  it('change plan swaps the plan item, not an add-on listed before it (the item the webhooks pick)', async () => {
    const { tenantId, user, subscriptionId } = await subscribedTenant()
    const addOn = w.fake.addPrice({ id: 'price_1QkT0eJx4nB2cD3eAddonSeats', unitAmount: 500, interval: 'month' })
    const stripeSub = w.fake.subscriptions.get(subscriptionId)!
    const planItem = stripeSub.items.data[0]
    stripeSub.items.data.unshift({ ...structuredClone(planItem), id: 'si_addonFirst01', price: structuredClone(addOn), quantity: 4 })
    stripeSub.items.total_count = 2

    const view = await svc.changePlan({ tenantId, actorUserId: user.id, planKey: 'enterprise', interval: 'month' })
    const update = w.fake.requests.filter((r) => r.method === 'POST' && r.path === `/v1/subscriptions/${subscriptionId}`).at(-1)!
    expect(update.params).toMatchObject({ items: [{ id: planItem.id, price: ENT_MONTHLY }] })
    expect(stripeSub.items.data.map((i: { price: { id: string } }) => i.price.id)).toEqual([addOn.id, ENT_MONTHLY])
    expect(view).toMatchObject({ plan: { key: 'enterprise' } })
    // Already on the plan is judged on the plan item too, not on the add-on.
    expect(await rejection(svc.changePlan({ tenantId, actorUserId: user.id, planKey: 'enterprise', interval: 'month' }))).toMatchObject({
      statusCode: 409,
      code: 'ALREADY_ON_PLAN',
    })
  })

  it('cancel or change without a subscription → 404 NO_SUBSCRIPTION', async () => {
    const tenantId = await insertTenant(w.host, w.config)
    expect(await rejection(svc.cancelSubscription({ tenantId, actorUserId: null }))).toMatchObject({
      statusCode: 404,
      code: 'NO_SUBSCRIPTION',
    })
    expect(await rejection(svc.changePlan({ tenantId, actorUserId: null, planKey: 'pro', interval: 'month' }))).toMatchObject({
      code: 'NO_SUBSCRIPTION',
    })
    expect(await svc.getSubscription(tenantId)).toBeNull()
  })
})

describe('one-time checkout and the portal', () => {
  it('one-time checkout in payment mode with quantity; bad quantities are 400', async () => {
    const tenantId = await insertTenant(w.host, w.config)
    const user = await insertUser(w.host)
    const { id } = await svc.createOneTimeCheckout({ tenantId, user, priceId: SEAT_PACK, quantity: 3 })
    // What was bought rides on the session's metadata: checkout events carry no line items.
    const metadata = { tenant_id: tenantId, user_id: user.id, price_id: SEAT_PACK, quantity: '3' }
    expect(w.fake.sessions.get(id)).toMatchObject({ mode: 'payment', amount_total: 4500, client_reference_id: tenantId, metadata })
    expect(w.fake.sessions.get(id)!._params.payment_intent_data).toEqual({ metadata })
    expect(
      await rejection(svc.createOneTimeCheckout({ tenantId, user, priceId: 'price_1QkT0dJx4nB2cD3eSeatPack', quantity: 0 })),
    ).toMatchObject({
      statusCode: 400,
      code: 'INVALID_QUANTITY',
    })
    // A recurring price in payment mode is refused by Stripe: a 502 with Stripe's code, not a 500.
    expect(await rejection(svc.createOneTimeCheckout({ tenantId, user, priceId: PRO_MONTHLY, quantity: 1 }))).toMatchObject({
      statusCode: 502,
      code: 'STRIPE_REQUEST_FAILED',
    })

    // A price of the Stripe account that the product does not sell (not in STRIPE_ONE_TIME_PRICES, no plan's): 400, Stripe never asked.
    const sessions = w.fake.count('POST', '/v1/checkout/sessions')
    for (const priceId of [NOT_FOR_SALE, 'price_1QkT0zJx4nB2cD3eUnknown']) {
      expect(await rejection(svc.createOneTimeCheckout({ tenantId, user, priceId, quantity: 1 }))).toMatchObject({
        statusCode: 400,
        code: 'PRICE_NOT_FOR_SALE',
      })
    }
    expect(w.fake.count('POST', '/v1/checkout/sessions')).toBe(sessions)
  })

  it('portal session for the tenant’s customer; 409 NO_BILLING_ACCOUNT before any checkout', async () => {
    const { tenantId } = await subscribedTenant()
    const { url } = await svc.createPortalSession({ tenantId })
    expect(url).toMatch(/^https:\/\/billing\.stripe\.com\/p\/session\//)
    const portal = [...w.fake.portalSessions.values()].at(-1)!
    expect(portal.return_url).toBe('http://localhost:3000/billing')
    const [tenant] = await w.host.sql`select stripe_customer_id from core_tenants where id = ${tenantId}`
    expect(portal.customer).toBe(tenant!.stripe_customer_id)
    const bare = await insertTenant(w.host, w.config)
    expect(await rejection(svc.createPortalSession({ tenantId: bare }))).toMatchObject({ statusCode: 409, code: 'NO_BILLING_ACCOUNT' })
    // A subscription billed to some customer is not a billing account of this tenant: only its own customer opens a portal.
    const legacy = await insertTenant(w.host, w.config)
    const sub = w.fake.createSubscription({ customer: w.fake.createCustomer().id, price: PRO_MONTHLY, metadata: { tenant_id: legacy } })
    expect((await w.deliver(w.fake.event('customer.subscription.created', sub))).body.status).toBe('processed')
    expect(await rejection(svc.createPortalSession({ tenantId: legacy }))).toMatchObject({ statusCode: 409, code: 'NO_BILLING_ACCOUNT' })
  })
})

describe('billing disabled', () => {
  it('every service call answers 503 BILLING_DISABLED', async () => {
    const off = createStripeService({ config: env.config, host: w.host })
    const tenantId = await insertTenant(w.host, w.config)
    const user = await insertUser(w.host)
    const calls = [
      () => off.createSubscriptionCheckout({ tenantId, user, planKey: 'pro', interval: 'month' }),
      () => off.createOneTimeCheckout({ tenantId, user, priceId: 'price_x', quantity: 1 }),
      () => off.createPortalSession({ tenantId }),
      () => off.getSubscription(tenantId),
      () => off.cancelSubscription({ tenantId, actorUserId: null }),
      () => off.changePlan({ tenantId, actorUserId: null, planKey: 'pro', interval: 'month' }),
      () => off.activateFromCheckoutSession('cs_test_x'),
    ]
    for (const call of calls) expect(await rejection(call())).toMatchObject({ statusCode: 503, code: 'BILLING_DISABLED' })
  })
})
