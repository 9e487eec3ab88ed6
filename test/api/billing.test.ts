/**
 * Billing through the whole app: the real `stripe` SDK against the fake Stripe (STRIPE_API_HOST), a
 * seeded plans table, sessions and CSRF as a browser would send them, the Stripe webhook with no
 * session at all, an in-process worker for the billing jobs, and a real SMTP capture.
 *   checkout → webhook → active · the success redirect activates without the webhook · portal ·
 *   cancel at period end · change plan · owners/admins only · other tenants never see it ·
 *   billing disabled (503 except /billing/plans) · bad signatures · payment failure → owners mailed,
 *   tenant suspended after the grace period, resumed when paid · one-time purchases: only prices for sale,
 *   fulfilled once and only when paid (delayed payment methods), owners mailed when the payment fails ·
 *   trial ending → owners mailed · the gated export route (402/403/200).
 */
import { readFileSync } from 'node:fs'
import Stripe from 'stripe'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { parsePlansFile, type PlanSeed, seedPlans } from '../../src/features/billing/plans.js'
import { effectsJobId, fulfilJobId } from '../../src/features/billing/jobs.js'
import { startWorkers, type WorkerRuntime } from '../../src/worker.js'
import { fixture, WEBHOOK_SECRET } from '../billing/helpers.js'
import { buildApp } from '../helpers/build-app.js'
import { type Client, createClient } from '../helpers/client.js'
import { type FakeStripe, startFakeStripe, type StripeObject } from '../helpers/fake-stripe.js'
import { type SmtpCapture, startSmtpCapture } from '../helpers/smtp.js'
import { joinTenant } from '../helpers/members.js'
import { useApp } from '../helpers/use-app.js'
import { waitFor } from '../helpers/wait-for.js'

const PRO_M = 'price_1QkT0aJx4nB2cD3eAppProM'
const PRO_Y = 'price_1QkT0bJx4nB2cD3eAppProY'
const ENT_M = 'price_1QkT0cJx4nB2cD3eAppEntM'
const BASIC_M = 'price_1QkT0dJx4nB2cD3eAppBasicM'
/** One-time prices: credits are for sale (STRIPE_ONE_TIME_PRICES), the other is only a price of the Stripe account. */
const CREDITS = 'price_1QkT0gJx4nB2cD3eAppCredits'
const NOT_SOLD = 'price_1QkT0hJx4nB2cD3eAppNotSold'
const BASE = 'http://app.example.test'

/** A paid plan without `exports`: what the 403 FEATURE_NOT_IN_PLAN case needs (config/plans.json's paid plans all have it). */
const BASIC: PlanSeed = {
  key: 'basic',
  name: 'Basic',
  amountMonthly: 900,
  amountYearly: null,
  currency: 'usd',
  trialDays: 0,
  features: ['projects', 'members'],
  tierLevel: 1,
  sortOrder: 5,
  stripePriceMonthly: BASIC_M,
  stripePriceYearly: null,
}

let fake: FakeStripe
let smtp: SmtpCapture
let worker: WorkerRuntime

beforeAll(async () => {
  smtp = await startSmtpCapture()
  fake = await startFakeStripe()
  fake.addPrice({ id: PRO_M, unitAmount: 2900, interval: 'month' })
  fake.addPrice({ id: PRO_Y, unitAmount: 29000, interval: 'year' })
  fake.addPrice({ id: ENT_M, unitAmount: 9900, interval: 'month' })
  fake.addPrice({ id: BASIC_M, unitAmount: 900, interval: 'month' })
  fake.addPrice({ id: CREDITS, unitAmount: 1200, interval: null })
  fake.addPrice({ id: NOT_SOLD, unitAmount: 100, interval: null })
})
afterAll(async () => {
  await fake?.close()
  await smtp?.close()
})
const ctx = useApp(() => ({
  APP_BASE_URL: BASE,
  STRIPE_SECRET_KEY: 'sk_test_app_level',
  STRIPE_WEBHOOK_SECRET: WEBHOOK_SECRET,
  STRIPE_API_HOST: fake.url,
  STRIPE_ONE_TIME_PRICES: CREDITS,
  SMTP_HOST: smtp.host,
  SMTP_PORT: String(smtp.port),
  SMTP_STARTTLS: 'false',
  // No grace: a failed payment is due for suspension at once, so the test waits on jobs, not on time.
  BILLING_GRACE_DAYS: '0',
  PROVISION_INLINE: 'true',
}))
beforeAll(async () => {
  const app = ctx.app
  const file = parsePlansFile(JSON.parse(readFileSync(new URL('../../config/plans.json', import.meta.url), 'utf8')))
  await seedPlans(app.host.db, [...file, BASIC], {
    STRIPE_MONTHLY_PRICE_ID: PRO_M,
    STRIPE_YEARLY_PRICE_ID: PRO_Y,
    STRIPE_ENTERPRISE_MONTHLY_PRICE_ID: ENT_M,
  })
  worker = await startWorkers(app.services, { scopes: ['system'], concurrency: 4 })
}, 30_000)

afterAll(async () => {
  await worker?.close(5000)
})

let seq = 0
const tag = () => `${Date.now().toString(36)}${(seq++).toString(36)}`

interface Owner {
  c: Client
  userId: string
  email: string
  tenantId: string
  slug: string
  tenantName: string
}

/** A fresh user, logged in, owner of a fresh active personal tenant. */
async function owner(label = 'owner'): Promise<Owner> {
  const c = createClient(ctx.app)
  const email = `${label}-${tag()}@example.com`
  const res = await c.signup(email)
  expect(res.statusCode, res.body).toBe(201)
  const { user, tenant } = res.json()
  expect(tenant.status).toBe('active')
  return { c, userId: user.id, email, tenantId: tenant.id, slug: tenant.slug, tenantName: tenant.name }
}

/** A fresh user added to `o`'s tenant with a role; returns their client with the tenant header bound. */
async function member(o: Owner, role: 'admin' | 'member', localRole?: 'editor' | 'viewer') {
  const m = await owner(role === 'admin' ? 'admin' : (localRole ?? 'member'))
  await joinTenant(ctx.app, o.tenantId, { id: m.userId, email: m.email }, role, localRole)
  const h = { 'x-tenant-id': o.tenantId }
  return {
    ...m,
    get: (url: string) => m.c.get(url, h),
    post: (url: string, body?: unknown) => m.c.post(url, body, h),
  }
}

function expectError(res: { statusCode: number; body: string; json(): Record<string, unknown> }, status: number, code: string) {
  expect(res.statusCode, res.body).toBe(status)
  expect(res.json()).toMatchObject({ statusCode: status, code })
}

/** A signed delivery to POST /webhooks/stripe, as Stripe sends it: no cookie, no CSRF token. */
async function deliver(event: StripeObject, opts: { signature?: string | null } = {}) {
  const body = JSON.stringify(event)
  const headers: Record<string, string> = { 'content-type': 'application/json' }
  if (opts.signature !== null)
    headers['stripe-signature'] = opts.signature ?? Stripe.webhooks.generateTestHeaderString({ payload: body, secret: WEBHOOK_SECRET })
  return ctx.app.inject({ method: 'POST', url: '/webhooks/stripe', headers, payload: body })
}

/** Checkout through the API, paid in the fake, activated by the success redirect. */
async function subscribe(o: Owner, planId = 'pro'): Promise<{ sessionId: string; subscription: StripeObject }> {
  const res = await o.c.post('/api/billing/checkout', { planId, interval: 'month' })
  expect(res.statusCode, res.body).toBe(200)
  const { subscription } = fake.completeCheckout(res.json().id)
  const success = await o.c.get(`/billing/success?session_id=${res.json().id}`)
  expect(success.statusCode, success.body).toBe(200)
  return { sessionId: res.json().id, subscription: subscription! }
}

/** Poll until `check` returns something truthy (work done by the worker). */
const eventually = <T>(what: string, check: () => Promise<T | undefined | null | false>): Promise<T> =>
  waitFor(check, { message: what, interval: 50 }) as Promise<T>

const tenantStatus = async (tenantId: string) =>
  (await ctx.app.host.sql<{ status: string }[]>`select status from core_tenants where id = ${tenantId}`)[0]?.status

async function sysJob(id: string) {
  const [row] = await ctx.app.host.sql<{ status: string; result: unknown; job_type: string }[]>`
    select status, result, job_type from sys_jobs where id = ${id}`
  return row
}
const finished = (id: string) =>
  eventually(`job ${id}`, async () => {
    const job = await sysJob(id)
    return job && (job.status === 'completed' || job.status === 'failed') ? job : undefined
  })

/** An invoice for `sub` in the fixture's shape (API version pinned), with this scenario's ids. */
function invoiceFor(o: Owner, sub: StripeObject, patch: StripeObject): StripeObject {
  const ids = { tenantId: o.tenantId, userId: o.userId, customerId: sub.customer, subscriptionId: sub.id, eventSuffix: tag() }
  const invoice = fixture('invoice.payment_failed', ids).data.object
  return { ...invoice, id: `in_${tag()}`, created: fake.now, ...patch }
}

describe('checkout → webhook → active', () => {
  it('an owner checks out, Stripe completes it, the signed webhooks activate the subscription', async () => {
    const o = await owner()
    expect((await o.c.get('/api/billing/subscription')).json()).toEqual({ subscription: null })

    const res = await o.c.post('/api/billing/checkout', { planId: 'pro', interval: 'month' })
    expect(res.statusCode, res.body).toBe(200)
    const { id, url } = res.json()
    expect(url).toBe(`https://checkout.stripe.com/c/pay/${id}`)
    expect(fake.sessions.get(id)!._params).toMatchObject({
      mode: 'subscription',
      client_reference_id: o.tenantId,
      metadata: { tenant_id: o.tenantId, user_id: o.userId, plan_key: 'pro' },
      line_items: [{ price: PRO_M, quantity: '1' }],
      success_url: `${BASE}/billing/success?session_id={CHECKOUT_SESSION_ID}`,
    })

    const { session, subscription } = fake.completeCheckout(id)
    const completed = fake.event('checkout.session.completed', session)
    const created = fake.event('customer.subscription.created', subscription!)
    for (const e of [completed, created]) {
      const r = await deliver(e)
      expect(r.statusCode, r.body).toBe(200)
      expect(r.json()).toEqual({ received: true, status: 'processed' })
    }
    expect((await deliver(completed)).json()).toEqual({ received: true, status: 'duplicate' })

    const view = (await o.c.get('/api/billing/subscription')).json().subscription
    expect(view).toMatchObject({
      stripeSubscriptionId: subscription!.id,
      status: 'trialing',
      active: true,
      plan: { key: 'pro', name: 'Pro' },
      interval: 'month',
      cancelAtPeriodEnd: false,
    })
    // The hook invalidated the catalog entry: the tenant's plan tier is current on the next request.
    expect((await o.c.get('/api/tenant')).json().tenant.planTier).toBe('pro')
  })

  it('the success redirect activates the subscription without any webhook, for an owner or admin of its tenant only', async () => {
    const o = await owner()
    const res = await o.c.post('/api/billing/checkout', { planId: 'pro', interval: 'year' })
    const { subscription } = fake.completeCheckout(res.json().id)
    const url = `/billing/success?session_id=${res.json().id}`
    // Holding the session id is not enough: no session → 401; someone else's tenant, or a plain member → 403.
    expectError(await ctx.app.inject({ method: 'GET', url, remoteAddress: '10.99.0.1' }), 401, 'UNAUTHENTICATED')
    const stranger = await owner('stranger')
    const plain = await member(o, 'member')
    for (const c of [stranger.c, plain]) {
      const denied = await c.get(url)
      expectError(denied, 403, 'CHECKOUT_TENANT_MISMATCH')
      expect(denied.body).not.toContain(subscription!.id)
    }
    expect((await o.c.get('/api/billing/subscription')).json()).toEqual({ subscription: null })
    const success = await o.c.get(url)
    expect(success.statusCode, success.body).toBe(200)
    expect(success.json()).toMatchObject({
      tenantId: o.tenantId,
      subscription: { stripeSubscriptionId: subscription!.id, status: 'trialing', active: true, plan: { key: 'pro' }, interval: 'year' },
    })
    expect((await o.c.get('/api/billing/subscription')).json().subscription).toEqual(success.json().subscription)
    // An admin of the tenant may land on it too (reloading the page is harmless).
    const admin = await member(o, 'admin')
    expect((await admin.get(url)).json()).toEqual(success.json())
  })

  it('the success redirect answers a bad, unknown or unfinished session with a 4xx and a code', async () => {
    const o = await owner()
    const c = o.c
    expectError(await c.get('/billing/success'), 400, 'VALIDATION_ERROR')
    expectError(await c.get('/billing/success?session_id=not-a-session'), 400, 'INVALID_CHECKOUT_SESSION')
    expectError(await c.get('/billing/success?session_id=cs_test_doesnotexist'), 404, 'CHECKOUT_SESSION_NOT_FOUND')
    const open = (await o.c.post('/api/billing/checkout', { planId: 'pro', interval: 'month' })).json()
    expectError(await c.get(`/billing/success?session_id=${open.id}`), 409, 'CHECKOUT_NOT_COMPLETE')
    expect((await o.c.get('/api/billing/subscription')).json()).toEqual({ subscription: null })
  })
})

describe('managing the subscription', () => {
  it('portal, plan change (prorated) and cancel at period end', async () => {
    const o = await owner()
    // Cached in the catalog as 'free': the success redirect and change-plan must drop that copy.
    expect((await o.c.get('/api/tenant')).json().tenant.planTier).toBe('free')
    const { subscription } = await subscribe(o)
    expect((await o.c.get('/api/tenant')).json().tenant.planTier).toBe('pro')

    const portal = await o.c.post('/api/billing/portal', {})
    expect(portal.statusCode, portal.body).toBe(200)
    expect(portal.json().url).toMatch(/^https:\/\/billing\.stripe\.com\/p\/session\//)
    expect([...fake.portalSessions.values()].at(-1)).toMatchObject({ customer: subscription.customer, return_url: `${BASE}/billing` })
    // The body is optional (as documented): none at all is the same as {}.
    const bodiless = await o.c.post('/api/billing/portal')
    expect(bodiless.statusCode, bodiless.body).toBe(200)

    const changed = await o.c.post('/api/billing/change-plan', { planId: 'enterprise', interval: 'month' })
    expect(changed.statusCode, changed.body).toBe(200)
    expect(changed.json().subscription).toMatchObject({ plan: { key: 'enterprise' }, cancelAtPeriodEnd: false })
    expect(fake.subscriptions.get(subscription.id)!.items.data[0].price.id).toBe(ENT_M)
    expect(fake.requests.at(-1)!.params).toMatchObject({ proration_behavior: 'create_prorations' })
    // No webhook involved: the service invalidated the catalog entry after its own commit.
    expect((await o.c.get('/api/tenant')).json().tenant.planTier).toBe('enterprise')
    expectError(await o.c.post('/api/billing/change-plan', { planId: 'enterprise', interval: 'month' }), 409, 'ALREADY_ON_PLAN')

    const canceled = await o.c.post('/api/billing/cancel')
    expect(canceled.statusCode, canceled.body).toBe(200)
    expect(canceled.json().subscription).toMatchObject({ status: 'trialing', active: true, cancelAtPeriodEnd: true })
    expect(fake.subscriptions.get(subscription.id)!.cancel_at_period_end).toBe(true)

    const actions = await ctx.app.host.sql<{ action: string; actor_user_id: string | null }[]>`
      select action, actor_user_id from sys_audit_logs where tenant_id = ${o.tenantId} and action like 'billing.%' order by created_at, id`
    expect(actions).toEqual(
      expect.arrayContaining([
        { action: 'billing.subscription.plan_change_requested', actor_user_id: o.userId },
        { action: 'billing.subscription.cancel_requested', actor_user_id: o.userId },
      ]),
    )
  })

  it('only the tenant’s owners and admins manage billing; editors and viewers get 403 INSUFFICIENT_ROLE', async () => {
    const o = await owner()
    const { subscription } = await subscribe(o)
    const [admin, editor, viewer] = [await member(o, 'admin'), await member(o, 'member', 'editor'), await member(o, 'member', 'viewer')]
    for (const m of [editor, viewer]) {
      expectError(await m.get('/api/billing/subscription'), 403, 'INSUFFICIENT_ROLE')
      expectError(await m.post('/api/billing/portal', {}), 403, 'INSUFFICIENT_ROLE')
      expectError(await m.post('/api/billing/cancel'), 403, 'INSUFFICIENT_ROLE')
      expectError(await m.post('/api/billing/checkout', { planId: 'pro', interval: 'month' }), 403, 'INSUFFICIENT_ROLE')
    }
    expect(fake.subscriptions.get(subscription.id)!.cancel_at_period_end).toBe(false)
    const seen = await admin.get('/api/billing/subscription')
    expect(seen.statusCode, seen.body).toBe(200)
    expect(seen.json().subscription.stripeSubscriptionId).toBe(subscription.id)
  })

  it('one Stripe customer per tenant: an admin of A only opens A’s portal, never the customer that pays for the owner’s tenant B', async () => {
    const o = await owner('two-tenants')
    const created = await o.c.post('/tenants', { name: 'Second Co', slug: `second-${tag()}` })
    expect(created.statusCode, created.body).toBe(201)
    const b = { ...o, tenantId: created.json().id as string }
    const inB = { 'x-tenant-id': b.tenantId }
    // O pays for both tenants.
    const subA = (await subscribe(o)).subscription
    const checkoutB = await o.c.post('/api/billing/checkout', { planId: 'pro', interval: 'month' }, inB)
    expect(checkoutB.statusCode, checkoutB.body).toBe(200)
    const subB = fake.completeCheckout(checkoutB.json().id).subscription!
    expect((await o.c.get(`/billing/success?session_id=${checkoutB.json().id}`)).statusCode).toBe(200)
    expect(subA.customer).not.toBe(subB.customer)
    const [rowA, rowB] = await Promise.all(
      [o.tenantId, b.tenantId].map(
        async (id) =>
          (await ctx.app.host.sql<{ stripe_customer_id: string }[]>`select stripe_customer_id from core_tenants where id = ${id}`)[0],
      ),
    )
    expect(rowA!.stripe_customer_id).toBe(subA.customer)
    expect(rowB!.stripe_customer_id).toBe(subB.customer)
    expect(fake.customers.get(subA.customer)!.metadata).toMatchObject({ tenant_id: o.tenantId })
    // No person's customer is kept any more.
    expect(await ctx.app.host.sql`select 1 from information_schema.columns where table_name = 'core_users' and column_name = 'stripe_customer_id'`).toHaveLength(0)

    const x = await member(o, 'admin')
    const portal = await x.post('/api/billing/portal', {})
    expect(portal.statusCode, portal.body).toBe(200)
    const opened = [...fake.portalSessions.values()].at(-1)!
    expect(opened.customer).toBe(subA.customer)
    // Nothing of B in that portal: the only subscriptions of that customer are A's.
    const billedThere = [...fake.subscriptions.values()].filter((s) => s.customer === opened.customer).map((s) => s.id)
    expect(billedThere).toEqual([subA.id])
    // And B itself is not X's to name.
    expectError(await x.c.post('/api/billing/portal', {}, inB), 404, 'TENANT_NOT_FOUND')
    expectError(await x.c.get('/api/billing/subscription', inB), 404, 'TENANT_NOT_FOUND')
  })

  it('another tenant’s owner never sees or touches this subscription (404 TENANT_NOT_FOUND)', async () => {
    const o = await owner()
    const { subscription } = await subscribe(o)
    const stranger = await owner('stranger')
    const theirs = { 'x-tenant-id': o.tenantId }
    expectError(await stranger.c.get('/api/billing/subscription', theirs), 404, 'TENANT_NOT_FOUND')
    expectError(await stranger.c.post('/api/billing/cancel', undefined, theirs), 404, 'TENANT_NOT_FOUND')
    expectError(await stranger.c.post('/api/billing/portal', {}, theirs), 404, 'TENANT_NOT_FOUND')
    expectError(await stranger.c.get(`/t/${o.slug}/api/billing/subscription`), 404, 'TENANT_NOT_FOUND')
    // Their own tenant has none.
    expect((await stranger.c.get('/api/billing/subscription')).json()).toEqual({ subscription: null })
    expect(fake.subscriptions.get(subscription.id)!.cancel_at_period_end).toBe(false)
  })
})

describe('the Stripe webhook through the app', () => {
  it('a bad or missing signature is 400 INVALID_SIGNATURE and writes nothing', async () => {
    const o = await owner()
    const sub = fake.createSubscription({ customer: fake.createCustomer().id, price: PRO_M, metadata: { tenant_id: o.tenantId } })
    const event = fake.event('customer.subscription.created', sub)
    const forged = Stripe.webhooks.generateTestHeaderString({ payload: JSON.stringify(event), secret: 'whsec_not_ours' })
    expectError(await deliver(event, { signature: forged }), 400, 'INVALID_SIGNATURE')
    expectError(await deliver(event, { signature: null }), 400, 'INVALID_SIGNATURE')
    expectError(await deliver(event, { signature: 't=1,v1=deadbeef' }), 400, 'INVALID_SIGNATURE')
    expect(await ctx.app.host.sql`select 1 from core_stripe_webhook_events where stripe_event_id = ${event.id}`).toHaveLength(0)
    expect(await ctx.app.host.sql`select 1 from core_subscriptions where stripe_subscription_id = ${sub.id}`).toHaveLength(0)
    // The same event correctly signed goes through (no session, so no CSRF token is asked for).
    expect((await deliver(event)).json()).toEqual({ received: true, status: 'processed' })
  })
})

describe('billing disabled (no STRIPE_SECRET_KEY)', () => {
  it('answers 503 BILLING_DISABLED on billing routes while plans and the rest of the app work', async () => {
    const off = await buildApp(ctx.env.configWith({ STRIPE_SECRET_KEY: '', STRIPE_WEBHOOK_SECRET: '' }))
    try {
      const c = createClient(off)
      expect((await c.signup(`nobill-${tag()}@example.com`)).statusCode).toBe(201)
      expectError(await c.get('/api/billing/subscription'), 503, 'BILLING_DISABLED')
      expectError(await c.post('/api/billing/checkout', { planId: 'pro', interval: 'month' }), 503, 'BILLING_DISABLED')
      expectError(await c.post('/api/billing/portal', {}), 503, 'BILLING_DISABLED')
      expectError(await c.get('/billing/success?session_id=cs_test_x'), 503, 'BILLING_DISABLED')
      const hook = await off.inject({
        method: 'POST',
        url: '/webhooks/stripe',
        headers: { 'content-type': 'application/json' },
        payload: '{}',
      })
      expectError(hook, 503, 'BILLING_DISABLED')

      const plans = await c.get('/billing/plans')
      expect(plans.statusCode).toBe(200)
      expect(plans.json().plans.map((p: { key: string }) => p.key)).toEqual(['free', 'pro', 'enterprise', 'basic'])
      expect((await c.post('/api/projects', { name: 'still works' })).statusCode).toBe(201)
    } finally {
      await off.close()
    }
  })
})

describe('payment failure: owners mailed, tenant suspended after the grace period, resumed when paid', () => {
  it('runs end to end through the webhook, the queue and the worker', async () => {
    // Stripe's clock a little in the past, so the steps below (+10 s each) are never ahead of ours:
    // past_due_since is Stripe's time, and the grace check is scheduled from it.
    fake.now = Math.floor(Date.now() / 1000) - 120
    const o = await owner()
    // A second owner: every owner gets the mail.
    const co = await member(o, 'admin')
    // Ownership is offered and accepted (never granted outright), between verified users.
    await ctx.app.host.sql`update core_users set email_verified_at = now() where id in ${ctx.app.host.sql([o.userId, co.userId])}`
    const offer = await o.c.post(`/api/members/${co.userId}/ownership-offer`, undefined, { 'x-tenant-id': o.tenantId })
    expect(offer.statusCode, offer.body).toBe(201)
    const accepted = await co.post(`/api/ownership-offers/${offer.json().id}/accept`)
    expect(accepted.statusCode, accepted.body).toBe(200)
    const { subscription: sub } = await subscribe(o)
    fake.now += 10
    fake.setSubscription(sub.id, { status: 'active', trial_end: null })
    expect((await deliver(fake.event('customer.subscription.updated', sub))).json().status).toBe('processed')

    // The renewal fails: Stripe moves the subscription to past_due and sends invoice.payment_failed.
    fake.now += 10
    fake.setSubscription(sub.id, { status: 'past_due' })
    const failed = fake.event('invoice.payment_failed', invoiceFor(o, sub, { amount_due: 2900, amount_paid: 0, status: 'open' }))
    expect((await deliver(failed)).json()).toEqual({ received: true, status: 'processed' })

    const mine = () => smtp.messages.filter((m) => m.subject === `Payment failed for ${o.tenantName} on Tenantkit`)
    const mails = await eventually('the payment failed mails', async () => (mine().length >= 2 ? mine() : undefined))
    expect(mails.map((m) => m.envelope.to[0]).sort()).toEqual([o.email, co.email].sort())
    for (const m of mails) {
      expect(m.text).toContain('The payment of $29.00 for your Pro plan could not be collected.')
      expect(m.text).toContain(`${BASE}/billing`)
      expect(m.text).toContain('will be suspended until it is settled')
      expect(m.html).toContain(`href="${BASE}/billing"`)
    }

    // BILLING_GRACE_DAYS=0: the grace check is due at once and suspends the tenant.
    const effects = await finished(effectsJobId(failed.id))
    expect(effects).toMatchObject({ status: 'completed', result: { mailed: 2, graceCheck: expect.any(String), resume: null } })
    const check = await finished((effects.result as { graceCheck: string }).graceCheck)
    expect(check).toMatchObject({ job_type: 'billing.grace_check', status: 'completed', result: { outcome: 'suspended' } })
    expect(await tenantStatus(o.tenantId)).toBe('suspended')
    expectError(await o.c.get('/api/tenant'), 403, 'TENANT_SUSPENDED')
    expectError(await o.c.get('/api/projects'), 403, 'TENANT_SUSPENDED')
    // ...but its owners can still see the subscription and reach the portal to pay.
    const whileSuspended = await o.c.get('/api/billing/subscription')
    expect(whileSuspended.statusCode).toBe(200)
    expect(whileSuspended.json().subscription.status).toBe('past_due')
    const portal = await o.c.post('/api/billing/portal', {})
    expect(portal.statusCode, portal.body).toBe(200)
    expectError(await o.c.post('/api/billing/checkout', { planId: 'pro', interval: 'month' }), 403, 'TENANT_SUSPENDED')
    const [reason] = await ctx.app.host.sql<{ metadata: Record<string, unknown> }[]>`
      select metadata from sys_audit_logs where tenant_id = ${o.tenantId} and action = 'billing.tenant_suspended'`
    expect(reason!.metadata).toMatchObject({ reason: 'billing', stripeSubscriptionId: sub.id, status: 'past_due', graceDays: 0 })

    // Exactly one mail per owner for this event: a redelivery is a duplicate, and resubmitting the effects job is a no-op.
    expect((await deliver(failed)).json().status).toBe('duplicate')
    await ctx.app.services.tasks.submit(
      'billing.event_effects',
      { eventId: failed.id, type: failed.type, tenantId: o.tenantId },
      { id: effectsJobId(failed.id) },
    )
    const queued = await ctx.app.host.sql<{ n: number }[]>`
      select count(*)::int as n from sys_jobs where job_type = 'email.send' and payload->>'template' = 'payment_failed'
        and payload->>'to' in ${ctx.app.host.sql([o.email, co.email])}`
    expect(queued[0]!.n).toBe(2)

    // The customer pays: invoice.paid with the subscription active again resumes the tenant.
    fake.now += 10
    fake.setSubscription(sub.id, { status: 'active' })
    const paid = fake.event('invoice.paid', invoiceFor(o, sub, { amount_due: 2900, amount_paid: 2900, status: 'paid' }))
    expect((await deliver(paid)).json().status).toBe('processed')
    expect(await finished(effectsJobId(paid.id))).toMatchObject({ status: 'completed', result: { resume: 'resumed', mailed: 0 } })
    expect(await tenantStatus(o.tenantId)).toBe('active')
    expect((await o.c.get('/api/tenant')).statusCode).toBe(200)
    expect((await o.c.get('/api/billing/subscription')).json().subscription).toMatchObject({
      status: 'active',
      active: true,
      pastDueSince: null,
    })
    const trail = await ctx.app.host.sql<{ action: string }[]>`
      select action from sys_audit_logs where tenant_id = ${o.tenantId}
        and action in ('tenant.suspended', 'billing.tenant_suspended', 'tenant.resumed', 'billing.tenant_resumed')
      order by created_at, id`
    expect(trail.map((r) => r.action)).toEqual(['tenant.suspended', 'billing.tenant_suspended', 'tenant.resumed', 'billing.tenant_resumed'])
  })

  it('never resumes a tenant an operator suspended', async () => {
    const o = await owner()
    const { subscription: sub } = await subscribe(o)
    await ctx.app.services.provisioner.run('suspended', o.tenantId)
    fake.now += 10
    fake.setSubscription(sub.id, { status: 'active', trial_end: null })
    const paid = fake.event('invoice.paid', invoiceFor(o, sub, { amount_due: 2900, amount_paid: 2900, status: 'paid' }))
    expect((await deliver(paid)).json().status).toBe('processed')
    expect(await finished(effectsJobId(paid.id))).toMatchObject({ status: 'completed', result: { resume: 'suspended-by-operator' } })
    expect(await tenantStatus(o.tenantId)).toBe('suspended')
  })

  it('a grace check finds the tenant paid meanwhile and leaves it active', async () => {
    const o = await owner()
    const { subscription: sub } = await subscribe(o)
    const [row] = await ctx.app.host.sql<{ id: string }[]>`select id from core_subscriptions where stripe_subscription_id = ${sub.id}`
    const job = await ctx.app.services.tasks.submit('billing.grace_check', {
      tenantId: o.tenantId,
      subscriptionId: row!.id,
      pastDueSince: new Date(Date.now() - 86_400_000).toISOString(),
    })
    expect(await finished(job.id)).toMatchObject({ status: 'completed', result: { outcome: 'paid-or-ended' } })
    expect(await tenantStatus(o.tenantId)).toBe('active')
  })
})

describe('one-time purchases', () => {
  /** A one-time checkout through the API, completed in the fake with a delayed payment method (complete, not paid yet). */
  async function buyWithDelayedPayment(o: Owner, quantity = 2) {
    const res = await o.c.post('/api/billing/checkout/one-time', { priceId: CREDITS, quantity })
    expect(res.statusCode, res.body).toBe(200)
    const { session } = fake.completeCheckout(res.json().id)
    session.payment_status = 'unpaid'
    return session
  }
  const outboxRows = async (jobId: string) =>
    (await ctx.app.host.sql<{ n: number }[]>`select count(*)::int as n from core_outbox where job_id = ${jobId}`)[0]!.n
  const audits = async (tenantId: string, action: string) =>
    ctx.app.host.sql<{ target_id: string; metadata: Record<string, unknown> }[]>`
      select target_id, metadata from sys_audit_logs where tenant_id = ${tenantId} and action = ${action} order by id`
  const ledgerOf = async (eventId: string) =>
    (await ctx.app.host.sql<{ status: string; error: string | null }[]>`
      select status, error from core_stripe_webhook_events where stripe_event_id = ${eventId}`)[0]

  it('sells only prices for sale: STRIPE_ONE_TIME_PRICES or a plan’s, anything else 400 PRICE_NOT_FOR_SALE', async () => {
    const o = await owner()
    const sessions = fake.count('POST', '/v1/checkout/sessions')
    for (const priceId of [NOT_SOLD, 'price_1QkT0zJx4nB2cD3eNoSuchPrice']) {
      expectError(await o.c.post('/api/billing/checkout/one-time', { priceId, quantity: 1 }), 400, 'PRICE_NOT_FOR_SALE')
    }
    expect(fake.count('POST', '/v1/checkout/sessions')).toBe(sessions)
    const ok = await o.c.post('/api/billing/checkout/one-time', { priceId: CREDITS, quantity: 2 })
    expect(ok.statusCode, ok.body).toBe(200)
    expect(fake.sessions.get(ok.json().id)).toMatchObject({
      mode: 'payment',
      amount_total: 2400,
      metadata: { tenant_id: o.tenantId, user_id: o.userId, price_id: CREDITS, quantity: '2' },
    })
  })

  it('a delayed payment is fulfilled when it succeeds, not at completion, and once for every event saying paid', async () => {
    const o = await owner()
    const session = await buyWithDelayedPayment(o)
    const job = fulfilJobId(session.id)

    // Completed with payment_status "unpaid": recorded as pending, nothing fulfilled.
    const completed = fake.event('checkout.session.completed', session)
    expect((await deliver(completed)).json()).toEqual({ received: true, status: 'processed' })
    expect(await outboxRows(job)).toBe(0)
    expect(await sysJob(job)).toBeUndefined()
    expect((await audits(o.tenantId, 'billing.payment.pending')).map((a) => a.target_id)).toEqual([session.id])

    // The bank debit clears.
    fake.now += 10
    session.payment_status = 'paid'
    const succeeded = fake.event('checkout.session.async_payment_succeeded', session)
    expect((await deliver(succeeded)).json()).toEqual({ received: true, status: 'processed' })
    expect(await finished(job)).toMatchObject({
      job_type: 'billing.payment.fulfil',
      status: 'completed',
      result: { recorded: true, checkoutSessionId: session.id },
    })
    const [fulfilled] = await audits(o.tenantId, 'billing.payment.fulfilled')
    expect(fulfilled).toMatchObject({
      target_id: session.id,
      metadata: { priceId: CREDITS, quantity: 2, amountTotal: 2400, currency: 'usd', eventId: succeeded.id },
    })

    // Another event saying paid (a completed+paid for the same session), and redeliveries: no second fulfilment.
    const alsoPaid = fake.event('checkout.session.completed', session)
    expect((await deliver(alsoPaid)).json().status).toBe('processed')
    expect((await deliver(succeeded)).json().status).toBe('duplicate')
    expect(await outboxRows(job)).toBe(1)
    const jobs = await ctx.app.host.sql`select id from sys_jobs where job_type = 'billing.payment.fulfil' and payload->>'checkoutSessionId' = ${session.id}`
    expect(jobs).toHaveLength(1)
    expect(await audits(o.tenantId, 'billing.payment.fulfilled')).toHaveLength(1)
  })

  it('a card payment (completed and paid) is fulfilled at completion', async () => {
    const o = await owner()
    const res = await o.c.post('/api/billing/checkout/one-time', { priceId: CREDITS, quantity: 1 })
    const { session } = fake.completeCheckout(res.json().id)
    expect(session.payment_status).toBe('paid')
    expect((await deliver(fake.event('checkout.session.completed', session))).json().status).toBe('processed')
    expect(await finished(fulfilJobId(session.id))).toMatchObject({ status: 'completed', result: { recorded: true } })
  })

  it('a failed delayed payment is recorded, the owners are mailed once, nothing is fulfilled', async () => {
    const o = await owner()
    const session = await buyWithDelayedPayment(o, 3)
    expect((await deliver(fake.event('checkout.session.completed', session))).json().status).toBe('processed')
    fake.now += 10
    const failed = fake.event('checkout.session.async_payment_failed', session)
    expect((await deliver(failed)).json()).toEqual({ received: true, status: 'processed' })

    const effects = await finished(effectsJobId(failed.id))
    expect(effects).toMatchObject({ status: 'completed', result: { mailed: 1 } })
    const subject = `Your payment for ${o.tenantName} on Tenantkit failed`
    const mail = await eventually('the payment failed mail', async () => smtp.messages.find((m) => m.subject === subject))
    expect(mail.envelope.to).toEqual([o.email])
    expect(mail.text).toContain('The payment of $36.00 for your purchase')
    expect(mail.text).toContain(`${BASE}/billing`)
    expect((await audits(o.tenantId, 'billing.payment.failed')).map((a) => a.target_id)).toEqual([session.id])

    expect((await deliver(failed)).json().status).toBe('duplicate')
    const queued = await ctx.app.host.sql`
      select 1 from sys_jobs where job_type = 'email.send' and payload->>'template' = 'checkout_payment_failed' and payload->>'to' = ${o.email}`
    expect(queued).toHaveLength(1)
    expect(await outboxRows(fulfilJobId(session.id))).toBe(0)
    expect(await audits(o.tenantId, 'billing.payment.fulfilled')).toHaveLength(0)
  })

  it('a paid session selling a price not for sale, or not saying what it sells, is recorded failed and not fulfilled', async () => {
    const o = await owner()
    const res = await o.c.post('/api/billing/checkout/one-time', { priceId: CREDITS, quantity: 1 })
    const { session } = fake.completeCheckout(res.json().id)
    // Sessions the kit did not create (a Payment Link, the dashboard) carry other metadata.
    const variants: [string, StripeObject][] = [
      ['price not for sale', { ...session, metadata: { ...session.metadata, price_id: NOT_SOLD } }],
      ['no price in metadata', { ...session, metadata: { tenant_id: o.tenantId } }],
    ]
    for (const [label, s] of variants) {
      const ev = fake.event('checkout.session.completed', s)
      expect((await deliver(ev)).json(), label).toEqual({ received: true, status: 'failed' })
      expect(await ledgerOf(ev.id), label).toMatchObject({ status: 'failed', error: expect.stringContaining(session.id) })
    }
    expect(await outboxRows(fulfilJobId(session.id))).toBe(0)
    expect(await audits(o.tenantId, 'billing.payment.not_fulfilled')).toHaveLength(2)
  })
})

describe('trial ending', () => {
  it('customer.subscription.trial_will_end mails the owners once per event; not once the trial is over', async () => {
    const o = await owner()
    const { subscription: sub } = await subscribe(o)
    expect(sub.status).toBe('trialing')
    fake.now += 10
    const ending = fake.event('customer.subscription.trial_will_end', sub)
    expect((await deliver(ending)).json()).toEqual({ received: true, status: 'processed' })
    expect(await finished(effectsJobId(ending.id))).toMatchObject({ status: 'completed', result: { mailed: 1 } })
    const subject = `Your Tenantkit trial for ${o.tenantName} ends soon`
    const mail = await eventually('the trial mail', async () => smtp.messages.find((m) => m.subject === subject))
    expect(mail.envelope.to).toEqual([o.email])
    expect(mail.text).toContain(`The Pro trial of ${o.tenantName} ends on ${new Date(sub.trial_end * 1000).toUTCString()}`)
    expect(mail.html).toContain(`href="${BASE}/billing"`)
    expect((await deliver(ending)).json().status).toBe('duplicate')
    const queued = await ctx.app.host.sql`
      select 1 from sys_jobs where job_type = 'email.send' and payload->>'template' = 'trial_will_end' and payload->>'to' = ${o.email}`
    expect(queued).toHaveLength(1)
    // The subscription state is not applied from this event.
    expect((await o.c.get('/api/billing/subscription')).json().subscription).toMatchObject({ status: 'trialing' })

    // Late: the trial already converted (our row is active): recorded, nobody mailed.
    fake.now += 10
    fake.setSubscription(sub.id, { status: 'active', trial_end: fake.now })
    expect((await deliver(fake.event('customer.subscription.updated', sub))).json().status).toBe('processed')
    const late = fake.event('customer.subscription.trial_will_end', { ...sub, status: 'trialing' })
    expect((await deliver(late)).json()).toEqual({ received: true, status: 'skipped' })
    expect(await sysJob(effectsJobId(late.id))).toBeUndefined()
  })
})

describe('the gated example route: GET /api/projects/export', () => {
  it('402 without a subscription, 403 FEATURE_NOT_IN_PLAN on a plan without exports, 200 on one with it', async () => {
    const none = await owner()
    expect((await none.c.post('/api/projects', { name: 'p' })).statusCode).toBe(201)
    expectError(await none.c.get('/api/projects/export'), 402, 'SUBSCRIPTION_REQUIRED')

    const basic = await owner()
    await subscribe(basic, 'basic')
    const denied = await basic.c.get('/api/projects/export')
    expectError(denied, 403, 'FEATURE_NOT_IN_PLAN')
    expect(denied.json()).toMatchObject({ feature: 'exports', plan: 'basic' })

    const pro = await owner()
    await subscribe(pro, 'pro')
    for (const name of ['Apollo', 'Gemini, "the twins"', '=HYPERLINK("http://evil")']) {
      expect((await pro.c.post('/api/projects', { name })).statusCode).toBe(201)
    }
    const csv = await pro.c.get('/api/projects/export')
    expect(csv.statusCode, csv.body).toBe(200)
    expect(csv.headers['content-type']).toBe('text/csv; charset=utf-8')
    expect(csv.headers['content-disposition']).toBe(`attachment; filename="projects-${pro.slug}.csv"`)
    const lines = csv.body.trimEnd().split('\r\n')
    expect(lines[0]).toBe('id,name,description,status,createdBy,createdAt,updatedAt')
    expect(lines.slice(1).map((l) => l.split(',')[1])).toEqual(['Apollo', '"Gemini', `"'=HYPERLINK(""http://evil"")"`])
    expect(lines[2]).toContain(`,"Gemini, ""the twins""",,active,${pro.userId},`)

    // Any member may export (minRole viewer); the tenant's plan, not the member's, decides.
    const viewer = await member(pro, 'member', 'viewer')
    const jsonl = await viewer.get('/api/projects/export?format=jsonl')
    expect(jsonl.statusCode, jsonl.body).toBe(200)
    expect(jsonl.headers['content-type']).toBe('application/x-ndjson; charset=utf-8')
    const rows = jsonl.body
      .trimEnd()
      .split('\n')
      .map((l) => JSON.parse(l))
    expect(rows.map((r) => r.name)).toEqual(['Apollo', 'Gemini, "the twins"', '=HYPERLINK("http://evil")'])
    expect(rows[0]).toMatchObject({ status: 'active', createdBy: pro.userId, description: null })

    expectError(await pro.c.get('/api/projects/export?format=xml'), 400, 'VALIDATION_ERROR')
    expectError(await createClient(ctx.app).get('/api/projects/export', { 'x-tenant-id': pro.tenantId }), 401, 'UNAUTHENTICATED')
  })
})
