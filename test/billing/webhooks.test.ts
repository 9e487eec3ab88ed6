/**
 * POST /webhooks/stripe against a real host database and the real SDK talking to the fake Stripe:
 * exactly-once effects, ordering and ties, signatures, unhandled types, transient failures and the
 * after-commit hook.
 */
import { uuidv7 } from 'uuidv7'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { connect } from '../../src/core/db/connect.js'
import type { BillingEvent } from '../../src/features/billing/webhooks.js'
import stripeWebhookRoutes from '../../src/features/billing/routes/stripe-webhook.js'
import { createStripe } from '../../src/features/billing/stripe.js'
import { billingFollowUps, fulfilJobId } from '../../src/features/billing/jobs.js'
import { outboxJobId } from '../../src/core/jobs/outbox.js'
import { ADMIN_URL } from '../helpers/env.js'
import type { StripeObject } from '../helpers/fake-stripe.js'
import { createTestEnv, type TestEnv, withDatabase } from '../helpers/test-env.js'
import { waitFor } from '../helpers/wait-for.js'
import {
  auditActions,
  bareFastify,
  type BillingWorld,
  fixture,
  freshIds,
  type Ids,
  insertTenant,
  insertUser,
  ledger,
  NOT_FOR_SALE,
  SEAT_PACK,
  sign,
  startBillingWorld,
  subscriptionState,
  WEBHOOK_SECRET,
} from './helpers.js'

let env: TestEnv
let w: BillingWorld

beforeAll(async () => {
  env = await createTestEnv()
  w = await startBillingWorld(env)
})

afterAll(async () => {
  await w?.close()
  await env?.cleanup()
})

async function scenario(): Promise<Ids> {
  const tenantId = await insertTenant(w.host, w.config)
  const user = await insertUser(w.host)
  return freshIds(tenantId, user.id)
}

/** Put Stripe's current copy of the subscription in the fake (what a refetch returns). */
function stripeHolds(sub: Record<string, unknown>) {
  w.fake.subscriptions.set(String(sub.id), structuredClone(sub))
}

describe('checkout → webhook → active', () => {
  it('links the tenant and customer from checkout.session.completed, then follows the subscription to active', async () => {
    const ids = await scenario()
    const created = fixture('customer.subscription.created', ids)
    stripeHolds(created.data.object)
    const retrieves = w.fake.count('GET', `/v1/subscriptions/${ids.subscriptionId}`)

    const checkout = fixture('checkout.session.completed', ids)
    const res = await w.deliver(checkout)
    expect(res).toEqual({ statusCode: 200, body: { received: true, status: 'processed' } })
    expect(w.fake.count('GET', `/v1/subscriptions/${ids.subscriptionId}`)).toBe(retrieves + 1)

    let state = await subscriptionState(w.host, ids.subscriptionId)
    expect(state).toMatchObject({ status: 'trialing', plan: 'pro', billing_interval: 'month', stripe_customer_id: ids.customerId })
    expect(state!.stripe_updated_at).toEqual(new Date(checkout.created * 1000))
    // Billing is per tenant: no person's customer is recorded (core_users has no stripe_customer_id since 0010).
    expect(await w.host.sql`select 1 from information_schema.columns where table_name = 'core_users' and column_name = 'stripe_customer_id'`).toHaveLength(0)
    const [tenant] = await w.host.sql`select plan_tier from core_tenants where id = ${ids.tenantId}`
    expect(tenant!.plan_tier).toBe('pro')

    // customer.subscription.created is older than the checkout event: stale, ignored.
    expect((await w.deliver(created)).body.status).toBe('skipped')
    expect((await ledger(w.host, created.id))[0]).toMatchObject({ status: 'skipped', error: expect.stringMatching(/^stale/) })

    const active = fixture('customer.subscription.updated.active', ids)
    expect((await w.deliver(active)).body.status).toBe('processed')
    state = await subscriptionState(w.host, ids.subscriptionId)
    expect(state).toMatchObject({ status: 'active', plan: 'pro', past_due_since: null })
    expect(state!.current_period_end).toEqual(new Date(active.data.object.items.data[0].current_period_end * 1000))

    expect(await auditActions(w.host, ids.tenantId)).toEqual([
      'billing.subscription.created',
      'billing.checkout.completed',
      'billing.subscription.updated',
    ])
  })
})

describe('checkout payment status (delayed payment methods)', () => {
  /** The fixture's checkout.session.completed as a one-time purchase of the seat pack, with this payment status. */
  function paymentCheckout(ids: Ids, type: string, paymentStatus: string, over: Record<string, unknown> = {}) {
    const ev = fixture('checkout.session.completed', ids)
    ev.id = `${ev.id}${type.split('.').at(-1)}${paymentStatus}`
    ev.type = type
    Object.assign(ev.data.object, {
      id: `cs_test_${ids.eventSuffix}`,
      mode: 'payment',
      subscription: null,
      payment_intent: `pi_${ids.eventSuffix}`,
      amount_subtotal: 3000,
      amount_total: 3000,
      payment_status: paymentStatus,
      metadata: { tenant_id: ids.tenantId, user_id: ids.userId, price_id: SEAT_PACK, quantity: '2' },
      ...over,
    })
    return ev
  }
  const hookFor = (eventId: string) => w.hookCalls.find((e) => e.eventId === eventId)
  const fulfilIntents = (eventId: string) => billingFollowUps(hookFor(eventId)!).filter((i) => i.job === 'billing.payment.fulfil')

  it('payment mode: "unpaid" at completion is pending (nothing to fulfil); the async success fulfils, keyed by the session', async () => {
    const ids = await scenario()
    const completed = paymentCheckout(ids, 'checkout.session.completed', 'unpaid')
    expect((await w.deliver(completed)).body.status).toBe('processed')
    expect(hookFor(completed.id)!.payment).toMatchObject({ outcome: 'pending', priceId: SEAT_PACK, quantity: 2 })
    expect(fulfilIntents(completed.id)).toEqual([])

    const succeeded = paymentCheckout(ids, 'checkout.session.async_payment_succeeded', 'paid')
    expect((await w.deliver(succeeded)).body.status).toBe('processed')
    const sessionId = succeeded.data.object.id
    expect(hookFor(succeeded.id)!.payment).toMatchObject({ checkoutSessionId: sessionId, outcome: 'paid', amountTotal: 3000 })
    const [intent] = fulfilIntents(succeeded.id)
    expect(intent).toMatchObject({ key: sessionId, payload: { tenantId: ids.tenantId, priceId: SEAT_PACK, quantity: 2, userId: ids.userId } })
    expect(outboxJobId(intent!.job, intent!.key!)).toBe(fulfilJobId(sessionId))

    // A completed event already paid (card) fulfils too, under the same job id: one fulfilment per session.
    const paidAtOnce = paymentCheckout(ids, 'checkout.session.completed', 'paid')
    await w.deliver(paidAtOnce)
    expect(fulfilIntents(paidAtOnce.id).map((i) => outboxJobId(i.job, i.key!))).toEqual([fulfilJobId(sessionId)])
    // A free purchase (100 % off) needs no payment and is fulfilled.
    const free = paymentCheckout(ids, 'checkout.session.completed', 'no_payment_required')
    await w.deliver(free)
    expect(hookFor(free.id)!.payment!.outcome).toBe('paid')

    const failed = paymentCheckout(ids, 'checkout.session.async_payment_failed', 'unpaid')
    expect((await w.deliver(failed)).body.status).toBe('processed')
    expect(hookFor(failed.id)!.payment!.outcome).toBe('failed')
    expect(fulfilIntents(failed.id)).toEqual([])
    expect(billingFollowUps(hookFor(failed.id)!)).toEqual([
      expect.objectContaining({ job: 'billing.event_effects', key: failed.id, payload: expect.objectContaining({ payment: expect.anything() }) }),
    ])
    expect(await auditActions(w.host, ids.tenantId)).toEqual([
      'billing.payment.pending',
      'billing.payment.completed',
      'billing.payment.completed',
      'billing.payment.completed',
      'billing.payment.failed',
    ])
  })

  it('payment mode: a paid session is not fulfilled unless its price is for sale (metadata, checked again at payment)', async () => {
    const ids = await scenario()
    for (const metadata of [
      { tenant_id: ids.tenantId, price_id: NOT_FOR_SALE, quantity: '1' },
      { tenant_id: ids.tenantId },
      { tenant_id: ids.tenantId, price_id: SEAT_PACK, quantity: '0' },
    ]) {
      const ev = paymentCheckout(ids, 'checkout.session.completed', 'paid', { metadata })
      ev.id = `${ev.id}${Object.keys(metadata).length}${metadata.quantity ?? ''}`
      expect(await w.deliver(ev)).toEqual({ statusCode: 200, body: { received: true, status: 'failed' } })
      expect((await ledger(w.host, ev.id))[0]).toMatchObject({ status: 'failed', error: expect.stringMatching(/not for sale|does not say/) })
      expect(hookFor(ev.id)).toBeUndefined()
    }
    expect(await auditActions(w.host, ids.tenantId)).toEqual(Array(3).fill('billing.payment.not_fulfilled'))
  })

  it('subscription mode: the async payment events apply the subscription Stripe holds, whatever the session says', async () => {
    const ids = await scenario()
    stripeHolds({ ...fixture('customer.subscription.created', ids).data.object, status: 'incomplete' })
    const completed = fixture('checkout.session.completed', ids)
    completed.data.object.payment_status = 'unpaid'
    expect((await w.deliver(completed)).body.status).toBe('processed')
    expect(await subscriptionState(w.host, ids.subscriptionId)).toMatchObject({ status: 'incomplete' })
    const [tenant] = await w.host.sql`select plan_tier from core_tenants where id = ${ids.tenantId}`
    expect(tenant!.plan_tier).toBe('free')

    stripeHolds({ ...fixture('customer.subscription.created', ids).data.object, status: 'active' })
    const succeeded = fixture('checkout.session.completed', ids)
    Object.assign(succeeded, { id: `${succeeded.id}ok`, type: 'checkout.session.async_payment_succeeded', created: completed.created + 5 })
    succeeded.data.object.payment_status = 'paid'
    expect((await w.deliver(succeeded)).body.status).toBe('processed')
    expect(await subscriptionState(w.host, ids.subscriptionId)).toMatchObject({ status: 'active', plan: 'pro' })
    expect(hookFor(succeeded.id)!.payment).toBeUndefined()
    expect(await auditActions(w.host, ids.tenantId)).toEqual([
      'billing.subscription.created',
      'billing.checkout.completed',
      'billing.subscription.updated',
      'billing.checkout.async_payment_succeeded',
    ])
  })
})

describe('customer.subscription.trial_will_end', () => {
  it('applies no state and asks no refetch; hands the trial end to the effects (owners mailed once per event)', async () => {
    const ids = await scenario()
    const created = fixture('customer.subscription.created', ids)
    await w.deliver(created)
    const before = await subscriptionState(w.host, ids.subscriptionId)
    const retrieves = w.fake.count('GET', `/v1/subscriptions/${ids.subscriptionId}`)
    const ending = fixture('customer.subscription.created', ids)
    Object.assign(ending, { id: `${ending.id}trial`, type: 'customer.subscription.trial_will_end', created: created.created })
    expect((await w.deliver(ending)).body.status).toBe('processed')
    expect(w.fake.count('GET', `/v1/subscriptions/${ids.subscriptionId}`)).toBe(retrieves)
    expect(await subscriptionState(w.host, ids.subscriptionId)).toEqual(before)
    const hook = w.hookCalls.find((e) => e.eventId === ending.id)!
    expect(hook.trial).toEqual({ endsAt: new Date(created.data.object.trial_end * 1000), subscriptionId: expect.any(String) })
    expect(billingFollowUps(hook)).toEqual([
      expect.objectContaining({ job: 'billing.event_effects', key: ending.id, payload: expect.objectContaining({ trial: expect.anything() }) }),
    ])
    expect((await auditActions(w.host, ids.tenantId)).at(-1)).toBe('billing.subscription.trial_will_end')
  })
})

describe('the plan item', () => {
  it('is the item whose price belongs to a known plan, in whatever order Stripe lists the items', async () => {
    const addOn = (n: number, interval: string) => ({
      id: `si_addon${n}`,
      object: 'subscription_item',
      current_period_start: 1796115603,
      current_period_end: interval === 'year' ? 1827651603 : 1797325203,
      price: { id: `price_addon_${n}`, object: 'price', recurring: { interval, interval_count: 1 }, type: 'recurring', unit_amount: 500 },
      quantity: 3,
    })
    const orders: ((pro: object) => object[])[] = [
      (pro) => [addOn(1, 'year'), pro],
      (pro) => [pro, addOn(1, 'year')],
      (pro) => [addOn(1, 'year'), addOn(2, 'year'), pro],
      (pro) => [addOn(2, 'year'), pro, addOn(1, 'year')],
    ]
    for (const order of orders) {
      const ids = await scenario()
      const created = fixture('customer.subscription.created', ids)
      const items = created.data.object.items
      const pro = items.data[0]
      items.data = order(pro)
      items.total_count = items.data.length
      expect((await w.deliver(created)).body.status).toBe('processed')
      const state = await subscriptionState(w.host, ids.subscriptionId)
      expect(state, JSON.stringify(items.data.map((i: { price: { id: string } }) => i.price.id))).toMatchObject({
        plan: 'pro',
        stripe_price_id: pro.price.id,
        billing_interval: 'month',
        current_period_end: new Date(pro.current_period_end * 1000),
      })
      const [tenant] = await w.host.sql`select plan_tier from core_tenants where id = ${ids.tenantId}`
      expect(tenant!.plan_tier).toBe('pro')
    }
    // No item of a known plan: no plan (free tier), not an add-on mistaken for one.
    const ids = await scenario()
    const created = fixture('customer.subscription.created', ids)
    created.data.object.items.data = [addOn(1, 'month')]
    expect((await w.deliver(created)).body.status).toBe('processed')
    expect(await subscriptionState(w.host, ids.subscriptionId)).toMatchObject({ plan: null, stripe_price_id: 'price_addon_1' })
  })
})

describe('exactly once', () => {
  it('acknowledges a duplicate delivery with 200 and changes nothing', async () => {
    const ids = await scenario()
    const created = fixture('customer.subscription.created', ids)
    const first = await w.deliver(created)
    const audits = await auditActions(w.host, ids.tenantId)
    const hooks = w.hookCalls.filter((e) => e.eventId === created.id).length
    // The same event again, and again with a fresh signature (Stripe re-signs retries).
    const second = await w.deliver(created)
    const third = await w.deliver(created, { signature: sign(JSON.stringify(created)) })
    expect([first.body.status, second.body.status, third.body.status]).toEqual(['processed', 'duplicate', 'duplicate'])
    expect(await ledger(w.host, created.id)).toHaveLength(1)
    expect(await auditActions(w.host, ids.tenantId)).toEqual(audits)
    expect(w.hookCalls.filter((e) => e.eventId === created.id)).toHaveLength(hooks)
    expect(hooks).toBe(1)
  })

  it('processes concurrent deliveries of the same event once', async () => {
    const ids = await scenario()
    const created = fixture('customer.subscription.created', ids)
    const results = await Promise.all([w.deliver(created), w.deliver(created), w.deliver(created)])
    expect(results.map((r) => r.body.status).sort()).toEqual(['duplicate', 'duplicate', 'processed'])
    expect(await auditActions(w.host, ids.tenantId)).toEqual(['billing.subscription.created'])
  })
})

describe('ordering', () => {
  it('never lets an older event overwrite a newer state', async () => {
    const ids = await scenario()
    const active = fixture('customer.subscription.updated.active', ids)
    const created = fixture('customer.subscription.created', ids)
    expect((await w.deliver(active)).body.status).toBe('processed')
    expect((await w.deliver(created)).body.status).toBe('skipped')
    expect(await subscriptionState(w.host, ids.subscriptionId)).toMatchObject({
      status: 'active',
      stripe_updated_at: new Date(active.created * 1000),
    })
  })

  it('on a same-second tie refetches the subscription, and Stripe’s copy wins', async () => {
    const ids = await scenario()
    await w.deliver(fixture('customer.subscription.created', ids))
    const a = fixture('customer.subscription.updated.active', ids)
    const b = fixture('customer.subscription.updated.cancel_at_period_end', ids)
    b.created = a.created // same second: which came last is unknowable
    // Stripe's current object differs from both payloads.
    const truth = structuredClone(b.data.object)
    truth.cancel_at_period_end = false
    truth.cancel_at = null
    truth.status = 'past_due'
    stripeHolds(truth)

    const path = `/v1/subscriptions/${ids.subscriptionId}`
    const before = w.fake.count('GET', path)
    expect((await w.deliver(a)).body.status).toBe('processed')
    expect(w.fake.count('GET', path)).toBe(before) // newer than the row: applied without asking Stripe
    expect((await w.deliver(b)).body.status).toBe('processed')
    expect(w.fake.count('GET', path)).toBe(before + 1)
    expect(await subscriptionState(w.host, ids.subscriptionId)).toMatchObject({
      status: 'past_due',
      cancel_at_period_end: false,
      past_due_since: new Date(a.created * 1000),
      stripe_updated_at: new Date(a.created * 1000),
    })
  })

  it('invoice.payment_failed marks past_due with its time; invoice.paid clears it', async () => {
    const ids = await scenario()
    await w.deliver(fixture('customer.subscription.created', ids))
    const active = fixture('customer.subscription.updated.active', ids)
    await w.deliver(active)

    const failed = fixture('invoice.payment_failed', ids)
    stripeHolds({ ...active.data.object, status: 'past_due' })
    expect((await w.deliver(failed)).body.status).toBe('processed')
    expect(await subscriptionState(w.host, ids.subscriptionId)).toMatchObject({
      status: 'past_due',
      past_due_since: new Date(failed.created * 1000),
    })

    const paid = fixture('invoice.paid', ids)
    stripeHolds({ ...active.data.object, status: 'active' })
    expect((await w.deliver(paid)).body.status).toBe('processed')
    expect(await subscriptionState(w.host, ids.subscriptionId)).toMatchObject({ status: 'active', past_due_since: null })
    expect(await auditActions(w.host, ids.tenantId)).toEqual([
      'billing.subscription.created',
      'billing.subscription.updated',
      'billing.subscription.updated',
      'billing.invoice.payment_failed',
      'billing.subscription.updated',
      'billing.invoice.paid',
    ])
    const hook = w.hookCalls.find((e) => e.eventId === failed.id)
    expect(hook).toMatchObject({ type: 'invoice.payment_failed', tenantId: ids.tenantId, invoice: { amountDue: 2900, amountPaid: 0 } })
  })
})

describe('signatures', () => {
  it('answers 400 INVALID_SIGNATURE and writes nothing for a missing, wrong or tampered signature', async () => {
    const ids = await scenario()
    const created = fixture('customer.subscription.created', ids)
    const body = JSON.stringify(created)
    const tampered = body.replace('"trialing"', '"active"')
    const attempts = [
      await w.deliver(created, { signature: null }),
      await w.deliver(created, { signature: sign(body, 'whsec_not_the_secret') }),
      await w.deliver(created, { body: tampered, signature: sign(body) }),
      await w.deliver(created, { signature: 't=1,v1=deadbeef' }),
    ]
    for (const res of attempts) {
      expect(res.statusCode).toBe(400)
      expect(res.body).toMatchObject({ statusCode: 400, code: 'INVALID_SIGNATURE' })
    }
    expect(await ledger(w.host, created.id)).toHaveLength(0)
    expect(await subscriptionState(w.host, ids.subscriptionId)).toBeUndefined()
    expect(await auditActions(w.host, ids.tenantId)).toEqual([])
  })
})

describe('signed bodies that are not usable events', () => {
  it('a signed body that is not JSON is 400 INVALID_BODY, not a bad signature; nothing written', async () => {
    for (const body of ['not json', '{"id": "evt_x", ', '']) {
      const res = await w.deliver({}, { body, signature: sign(body) })
      expect(res.statusCode, body).toBe(400)
      expect(res.body).toMatchObject({ statusCode: 400, code: body === '' ? expect.any(String) : 'INVALID_BODY' })
    }
    const [{ n }] = (await w.host.sql`select count(*)::int as n from core_stripe_webhook_events where status = 'failed' and error like 'event%'`) as unknown as [
      { n: number },
    ]
    expect(n).toBe(0)
  })

  it('a signed event of an unusable shape is recorded failed and answered 200 (a retry cannot help); redelivery changes nothing', async () => {
    const ids = await scenario()
    const base = fixture('customer.subscription.created', ids)
    const variants: [string, StripeObject, RegExp][] = [
      ['data null', { ...base, id: `${base.id}a`, data: null }, /data\.object/],
      ['data.object missing', { ...base, id: `${base.id}b`, data: {} }, /data\.object/],
      ['created not a number', { ...base, id: `${base.id}c`, created: 'abc' }, /created/],
      ['NUL in a field', { ...base, id: `${base.id}d`, data: { object: { ...(base.data as { object: object }).object, status: 'trial\u0000ing' } } }, /NUL/],
      ['NUL in a key', { ...base, id: `${base.id}e`, data: { object: { 'x\u0000': 1 } } }, /NUL/],
      ['type missing', { ...base, id: `${base.id}f`, type: undefined }, /type/],
    ]
    for (const [label, event, reason] of variants) {
      const res = await w.deliver(event)
      expect(res, label).toEqual({ statusCode: 200, body: { received: true, status: 'failed' } })
      expect(await ledger(w.host, String(event.id)), label).toEqual([expect.objectContaining({ status: 'failed', error: expect.stringMatching(reason) })])
      expect(await w.deliver(event), `${label} again`).toEqual({ statusCode: 200, body: { received: true, status: 'failed' } })
      expect(await ledger(w.host, String(event.id))).toHaveLength(1)
    }
    // No id at all: recorded under a digest of the body, once.
    const anonymous = JSON.stringify({ object: 'event', type: 'customer.created' })
    expect(await w.deliver({}, { body: anonymous })).toEqual({ statusCode: 200, body: { received: true, status: 'failed' } })
    expect(await w.deliver({}, { body: anonymous })).toEqual({ statusCode: 200, body: { received: true, status: 'failed' } })
    const anon = await w.host.sql`select type, error from core_stripe_webhook_events where stripe_event_id like 'unusable_%'`
    expect(anon).toEqual([{ type: 'customer.created', error: 'event id missing or malformed' }])
    // Nothing was applied.
    expect(await subscriptionState(w.host, ids.subscriptionId)).toBeUndefined()
  })
})

describe('unhandled and unresolvable events', () => {
  it('records an unhandled type as skipped and answers 200', async () => {
    const ids = await scenario()
    const ev = fixture('customer.created', ids)
    const hooks = w.hookCalls.length
    expect(await w.deliver(ev)).toEqual({ statusCode: 200, body: { received: true, status: 'skipped' } })
    expect((await ledger(w.host, ev.id))[0]).toMatchObject({ status: 'skipped', type: 'customer.created', error: 'unhandled event type' })
    expect(w.hookCalls.length).toBe(hooks)
  })

  it('records a subscription for an unknown tenant as failed (200), and processes it when redelivered later', async () => {
    const ids = await scenario()
    const unknownTenant = uuidv7()
    const ev = fixture('customer.subscription.created', { ...ids, tenantId: unknownTenant })
    expect((await w.deliver(ev)).body.status).toBe('failed')
    expect((await ledger(w.host, ev.id))[0]).toMatchObject({ status: 'failed', error: expect.stringMatching(/no tenant/) })
    await insertTenant(w.host, w.config, { id: unknownTenant })
    expect((await w.deliver(ev)).body.status).toBe('processed')
    expect(await ledger(w.host, ev.id)).toEqual([expect.objectContaining({ status: 'processed', error: null })])
    expect(await subscriptionState(w.host, ids.subscriptionId)).toMatchObject({ status: 'trialing' })
  })
})

describe('the tenant of a subscription: one Stripe customer per tenant', () => {
  const withoutTenantMetadata = (ev: StripeObject) => {
    delete ev.data.object.metadata.tenant_id
    return ev
  }

  it('a subscription without tenant metadata lands on the tenant whose own customer it bills', async () => {
    const ids = await scenario()
    await w.host.sql`update core_tenants set stripe_customer_id = ${ids.customerId} where id = ${ids.tenantId}`
    const ev = withoutTenantMetadata(fixture('customer.subscription.created', ids))
    expect((await w.deliver(ev)).body.status).toBe('processed')
    const [row] = await w.host.sql`select tenant_id from core_subscriptions where stripe_subscription_id = ${ids.subscriptionId}`
    expect(row!.tenant_id).toBe(ids.tenantId)
  })

  it('never lands on another tenant merely billed to the same customer: recorded failed', async () => {
    // Tenant A has a subscription on customer C (e.g. a person's customer from before billing was per tenant).
    const ids = await scenario()
    expect((await w.deliver(fixture('customer.subscription.created', ids))).body.status).toBe('processed')
    // A second subscription of C that names no tenant, and C is no tenant's own customer.
    const other = { ...freshIds(ids.tenantId, ids.userId), customerId: ids.customerId }
    const ev = withoutTenantMetadata(fixture('customer.subscription.created', other))
    expect((await w.deliver(ev)).body.status).toBe('failed')
    expect((await ledger(w.host, ev.id))[0]).toMatchObject({ status: 'failed', error: expect.stringMatching(/no tenant/) })
    expect(await subscriptionState(w.host, other.subscriptionId)).toBeUndefined()
  })
})

describe('Stripe is called outside the host transaction', () => {
  const hostDb = () => new URL(env.hostUrl).pathname.slice(1)
  /** Host-database sessions (other than this query's) inside a transaction: what a slow Stripe call would pin. */
  const openTransactions = async () =>
    (
      await w.host.sql<{ n: number }[]>`
        select count(*)::int as n from pg_stat_activity
        where datname = ${hostDb()} and pid <> pg_backend_pid() and xact_start is not null`
    )[0]!.n

  /** Deliver `event` while Stripe holds the subscription refetch: no transaction is open meanwhile. */
  async function deliverWhileStripeIsSlow(ids: Ids, event: Record<string, unknown>) {
    const retrieves = w.fake.count('GET', `/v1/subscriptions/${ids.subscriptionId}`)
    const hold = w.fake.hold('GET', new RegExp(`/v1/subscriptions/${ids.subscriptionId}$`))
    const delivery = w.deliver(event)
    await hold.reached
    try {
      expect(await openTransactions()).toBe(0)
      expect(await ledger(w.host, String(event.id))).toHaveLength(0)
    } finally {
      hold.release()
    }
    const res = await delivery
    expect(w.fake.count('GET', `/v1/subscriptions/${ids.subscriptionId}`)).toBe(retrieves + 1)
    return res
  }

  it('checkout.session.completed: the subscription is fetched first, then applied in a short transaction', async () => {
    const ids = await scenario()
    stripeHolds(fixture('customer.subscription.created', ids).data.object)
    const res = await deliverWhileStripeIsSlow(ids, fixture('checkout.session.completed', ids))
    expect(res.body.status).toBe('processed')
    expect(await subscriptionState(w.host, ids.subscriptionId)).toMatchObject({ status: 'trialing', plan: 'pro' })
  })

  it('invoice.paid: refetched outside, applied as of the event', async () => {
    const ids = await scenario()
    const created = fixture('customer.subscription.created', ids)
    await w.deliver(created)
    stripeHolds({ ...created.data.object, status: 'active' })
    const res = await deliverWhileStripeIsSlow(ids, fixture('invoice.paid', ids))
    expect(res.body.status).toBe('processed')
    expect(await subscriptionState(w.host, ids.subscriptionId)).toMatchObject({ status: 'active' })
  })

  it('a same-second tie seen before the transaction: refetched outside it, Stripe’s copy wins', async () => {
    const ids = await scenario()
    const created = fixture('customer.subscription.created', ids)
    await w.deliver(created)
    const tie = fixture('customer.subscription.updated.active', ids)
    tie.created = created.created
    stripeHolds({ ...created.data.object, status: 'past_due' })
    const res = await deliverWhileStripeIsSlow(ids, tie)
    expect(res.body.status).toBe('processed')
    expect(await subscriptionState(w.host, ids.subscriptionId)).toMatchObject({ status: 'past_due' })
  })

  it('a tie that appears only inside the transaction rolls it back, fetches, and applies once', async () => {
    const ids = await scenario()
    const created = fixture('customer.subscription.created', ids)
    await w.deliver(created)
    const active = fixture('customer.subscription.updated.active', ids)
    stripeHolds({ ...active.data.object, cancel_at_period_end: true })
    const retrieves = w.fake.count('GET', `/v1/subscriptions/${ids.subscriptionId}`)
    // Another writer holds the row while the webhook's pre-check (no tie yet) runs, then moves the watermark to the event's second.
    const other = connect(env.hostUrl, { max: 1 })
    try {
      let delivery: ReturnType<BillingWorld['deliver']> | undefined
      await other.begin(async (tx) => {
        await tx`select 1 from core_subscriptions where stripe_subscription_id = ${ids.subscriptionId} for update`
        delivery = w.deliver(active)
        await waitFor(
          async () => {
            const [waiting] = await w.host.sql<{ n: number }[]>`
              select count(*)::int as n from pg_locks l join pg_stat_activity a on a.pid = l.pid
              where not l.granted and a.datname = ${hostDb()}`
            return waiting!.n > 0
          },
          { message: 'the webhook to wait for the row', interval: 10 },
        )
        await tx`update core_subscriptions set stripe_updated_at = ${new Date(active.created * 1000).toISOString()}
                 where stripe_subscription_id = ${ids.subscriptionId}`
      })
      expect((await delivery!).body.status).toBe('processed')
    } finally {
      await other.end()
    }
    expect(w.fake.count('GET', `/v1/subscriptions/${ids.subscriptionId}`)).toBe(retrieves + 1)
    expect(await subscriptionState(w.host, ids.subscriptionId)).toMatchObject({ status: 'active', cancel_at_period_end: true })
    expect(await ledger(w.host, active.id)).toEqual([expect.objectContaining({ status: 'processed' })])
    expect(w.hookCalls.filter((e) => e.eventId === active.id)).toHaveLength(1)
  })
})

describe('transient failures roll back so Stripe’s retry is processed', () => {
  it('database failure mid-transaction → 500, no ledger row; the retry is processed exactly once', async () => {
    const ids = await scenario()
    const created = fixture('customer.subscription.created', ids)
    // A real failure after the ledger insert: the subscription table disappears for a moment.
    const admin = connect(withDatabase(ADMIN_URL, new URL(env.hostUrl).pathname.slice(1)), { max: 1 })
    try {
      await admin`alter table core_subscriptions rename to core_subscriptions_offline`
      const res = await w.deliver(created)
      expect(res.statusCode).toBe(500)
      expect(res.body).toMatchObject({ code: 'INTERNAL_ERROR' })
      expect(await ledger(w.host, created.id)).toHaveLength(0)
      expect(await auditActions(w.host, ids.tenantId)).toEqual([])
    } finally {
      await admin`alter table core_subscriptions_offline rename to core_subscriptions`
      await admin.end()
    }
    expect((await w.deliver(created)).body.status).toBe('processed')
    expect((await w.deliver(created)).body.status).toBe('duplicate')
    expect(await ledger(w.host, created.id)).toEqual([expect.objectContaining({ status: 'processed' })])
    expect(await auditActions(w.host, ids.tenantId)).toEqual(['billing.subscription.created'])
    expect(w.hookCalls.filter((e) => e.eventId === created.id)).toHaveLength(1)
  })

  it('Stripe down during a refetch → 503, no ledger row; the retry is processed', async () => {
    const ids = await scenario()
    const created = fixture('customer.subscription.created', ids)
    await w.deliver(created)
    const paid = fixture('invoice.paid', ids)
    stripeHolds({ ...created.data.object, status: 'active' })
    w.fake.fail('GET', new RegExp(`/v1/subscriptions/${ids.subscriptionId}$`), { status: 500 })
    const res = await w.deliver(paid)
    expect(res.statusCode).toBe(503)
    expect(res.body).toMatchObject({ code: 'STRIPE_UNAVAILABLE' })
    expect(await ledger(w.host, paid.id)).toHaveLength(0)
    expect(await subscriptionState(w.host, ids.subscriptionId)).toMatchObject({ status: 'trialing' })
    expect((await w.deliver(paid)).body.status).toBe('processed')
    expect(await subscriptionState(w.host, ids.subscriptionId)).toMatchObject({ status: 'active' })
  })
})

describe('onBillingEvent', () => {
  it('is called once per processed event, after commit, with the tenant and the change', async () => {
    const ids = await scenario()
    const created = fixture('customer.subscription.created', ids)
    const seenInDb: unknown[] = []
    const calls: BillingEvent[] = []
    const app = bareFastify()
    await app.register(stripeWebhookRoutes, {
      prefix: '/webhooks',
      config: w.config,
      host: w.host,
      stripe: createStripe(w.config.stripe, { maxNetworkRetries: 0 }),
      onBillingEvent: async (e) => {
        calls.push(e)
        // After commit: another connection already sees the row.
        seenInDb.push((await ledger(w.host, e.eventId))[0]?.status)
      },
    })
    const send = (ev: Record<string, unknown>) => {
      const payload = JSON.stringify(ev)
      return app.inject({
        method: 'POST',
        url: '/webhooks/stripe',
        headers: { 'content-type': 'application/json', 'stripe-signature': sign(payload) },
        payload,
      })
    }
    await send(created)
    await send(created)
    await send(fixture('customer.created', ids))
    expect(calls).toHaveLength(1)
    expect(calls[0]).toMatchObject({
      eventId: created.id,
      type: 'customer.subscription.created',
      tenantId: ids.tenantId,
      occurredAt: new Date(created.created * 1000),
      subscription: { stripeSubscriptionId: ids.subscriptionId, status: 'trialing', planKey: 'pro', created: true, changed: true },
    })
    expect(seenInDb).toEqual(['processed'])
    await app.close()
  })

  it('a failing hook does not fail the webhook (the change is committed; Stripe must not retry)', async () => {
    const ids = await scenario()
    const app = bareFastify()
    await app.register(stripeWebhookRoutes, {
      prefix: '/webhooks',
      config: w.config,
      host: w.host,
      stripe: createStripe(w.config.stripe, { maxNetworkRetries: 0 }),
      onBillingEvent: async () => {
        throw new Error('queue unavailable')
      },
    })
    const payload = JSON.stringify(fixture('customer.subscription.created', ids))
    const res = await app.inject({
      method: 'POST',
      url: '/webhooks/stripe',
      headers: { 'content-type': 'application/json', 'stripe-signature': sign(payload) },
      payload,
    })
    expect(res.json()).toEqual({ received: true, status: 'processed' })
    await app.close()
  })
})

describe('billing disabled', () => {
  it('answers 503 BILLING_DISABLED without Stripe settings, and writes nothing', async () => {
    const app = bareFastify()
    await app.register(stripeWebhookRoutes, { prefix: '/webhooks', config: env.config, host: w.host })
    const ids = await scenario()
    const ev = fixture('customer.subscription.created', ids)
    const payload = JSON.stringify(ev)
    const res = await app.inject({
      method: 'POST',
      url: '/webhooks/stripe',
      headers: { 'content-type': 'application/json', 'stripe-signature': sign(payload, WEBHOOK_SECRET) },
      payload,
    })
    expect(res.statusCode).toBe(503)
    expect(res.json()).toMatchObject({ code: 'BILLING_DISABLED' })
    expect(await ledger(w.host, ev.id)).toHaveLength(0)
    await app.close()
  })
})
