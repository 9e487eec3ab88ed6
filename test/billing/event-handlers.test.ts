/**
 * One row per entry of STRIPE_EVENT_HANDLERS: the event (built from Stripe's published fixture shapes in
 * test/fixtures/stripe, with this scenario's ids), signed with the real SDK and posted to the real route,
 * and what it must leave behind: the ledger status, the audit rows, the subscription row, whether Stripe
 * was asked for the subscription, and the follow-up jobs written to the outbox.
 *
 * `ROWS satisfies Record<HandledEventType, Row>`: a handler without a row fails the typecheck, and the
 * test below also compares the table with the README's list. README "Extending" (c) is the recipe; the
 * last test applies it (an example handler added to a copy of the table) to show nothing else is needed.
 */
import { readFileSync } from 'node:fs'
import type { OutboxIntent } from '../../src/core/jobs/outbox.js'
import { writeBillingAudit } from '../../src/features/billing/audit.js'
import { type HandledEventType, STRIPE_EVENT_HANDLERS, type StripeEventHandlers } from '../../src/features/billing/stripe-events.js'
import { HANDLED_EVENT_TYPES } from '../../src/features/billing/webhooks.js'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { StripeObject } from '../helpers/fake-stripe.js'
import { createTestEnv, type TestEnv } from '../helpers/test-env.js'
import {
  auditActions,
  type BillingWorld,
  fixture,
  freshIds,
  type Ids,
  insertTenant,
  insertUser,
  ledger,
  SEAT_PACK,
  startBillingWorld,
  subscriptionState,
} from './helpers.js'

interface Row {
  /** The event under test. */
  event(ids: Ids): StripeObject
  /** Events delivered first (the state the event lands on). */
  before?: (ids: Ids) => StripeObject[]
  /** Stripe's current copy of the subscription (what a refetch returns). */
  stripeHolds?: (ids: Ids) => StripeObject
  expect: {
    ledger: 'processed' | 'skipped' | 'failed'
    /** The audit rows the event itself wrote, in order. */
    audit: string[]
    /** The subscription row afterwards (a subset of subscriptionState), or undefined: none. */
    subscription?: Record<string, unknown>
    /** Whether the handler asked Stripe for the subscription. */
    refetched: boolean
    /** Job names of the follow-ups written to the outbox, in order. */
    followUps: string[]
  }
}

/** A fixture event under another type (and a distinct id), for types Stripe sends with the same object. */
function as(name: string, type: string, ids: Ids, over: Record<string, unknown> = {}): StripeObject {
  const ev = fixture(name, ids)
  Object.assign(ev, { id: `${ev.id}${type.split('.').at(-1)!.replace(/_/g, '')}`, type })
  Object.assign(ev.data.object, over)
  return ev
}

/** The checkout fixture as a one-time purchase of the seat pack (payment mode). */
const oneTime = (paymentStatus: string, ids: Ids) => ({
  id: `cs_test_${ids.eventSuffix}`,
  mode: 'payment',
  subscription: null,
  amount_total: 3000,
  payment_status: paymentStatus,
  metadata: { tenant_id: ids.tenantId, user_id: ids.userId, price_id: SEAT_PACK, quantity: '2' },
})

const created = (ids: Ids) => fixture('customer.subscription.created', ids)
const active = (ids: Ids) => fixture('customer.subscription.updated.active', ids)

const ROWS = {
  'checkout.session.completed': {
    event: (ids) => fixture('checkout.session.completed', ids),
    stripeHolds: (ids) => created(ids).data.object,
    expect: {
      ledger: 'processed',
      audit: ['billing.subscription.created', 'billing.checkout.completed'],
      subscription: { status: 'trialing', plan: 'pro' },
      refetched: true,
      followUps: ['billing.event_effects'],
    },
  },
  'checkout.session.async_payment_succeeded': {
    event: (ids) => as('checkout.session.completed', 'checkout.session.async_payment_succeeded', ids, oneTime('paid', ids)),
    expect: { ledger: 'processed', audit: ['billing.payment.completed'], refetched: false, followUps: ['billing.payment.fulfil'] },
  },
  'checkout.session.async_payment_failed': {
    event: (ids) => as('checkout.session.completed', 'checkout.session.async_payment_failed', ids, oneTime('unpaid', ids)),
    expect: { ledger: 'processed', audit: ['billing.payment.failed'], refetched: false, followUps: ['billing.event_effects'] },
  },
  'customer.subscription.trial_will_end': {
    before: (ids) => [created(ids)],
    event: (ids) => as('customer.subscription.created', 'customer.subscription.trial_will_end', ids),
    expect: {
      ledger: 'processed',
      audit: ['billing.subscription.trial_will_end'],
      subscription: { status: 'trialing' },
      refetched: false,
      followUps: ['billing.event_effects'],
    },
  },
  'customer.subscription.created': {
    event: created,
    expect: {
      ledger: 'processed',
      audit: ['billing.subscription.created'],
      subscription: { status: 'trialing', plan: 'pro' },
      refetched: false,
      followUps: ['billing.event_effects'],
    },
  },
  'customer.subscription.updated': {
    before: (ids) => [created(ids)],
    event: active,
    // trialing → active: still in good standing, nothing to follow up.
    expect: { ledger: 'processed', audit: ['billing.subscription.updated'], subscription: { status: 'active' }, refetched: false, followUps: [] },
  },
  'customer.subscription.deleted': {
    before: (ids) => [created(ids), active(ids)],
    event: (ids) => fixture('customer.subscription.deleted', ids),
    expect: {
      ledger: 'processed',
      audit: ['billing.subscription.canceled'],
      subscription: { status: 'canceled' },
      refetched: false,
      followUps: [],
    },
  },
  'invoice.paid': {
    before: (ids) => [created(ids), active(ids)],
    stripeHolds: (ids) => active(ids).data.object,
    event: (ids) => fixture('invoice.paid', ids),
    expect: {
      ledger: 'processed',
      audit: ['billing.invoice.paid'],
      subscription: { status: 'active', past_due_since: null },
      refetched: true,
      followUps: ['billing.event_effects'],
    },
  },
  'invoice.payment_failed': {
    before: (ids) => [created(ids), active(ids)],
    stripeHolds: (ids) => ({ ...active(ids).data.object, status: 'past_due' }),
    event: (ids) => fixture('invoice.payment_failed', ids),
    expect: {
      ledger: 'processed',
      audit: ['billing.subscription.updated', 'billing.invoice.payment_failed'],
      subscription: { status: 'past_due', past_due_since: expect.any(Date) },
      refetched: true,
      followUps: ['billing.event_effects'],
    },
  },
} satisfies Record<HandledEventType, Row>

let env: TestEnv
let w: BillingWorld
/** What the route wrote to the outbox, by Stripe event id (written in the event's transaction). */
const written = new Map<string, OutboxIntent[]>()
let writing: string | undefined

beforeAll(async () => {
  env = await createTestEnv()
  w = await startBillingWorld(env, {
    followUps: {
      outbox: {
        async write(_tx, intents) {
          written.set(writing!, [...(written.get(writing!) ?? []), ...intents])
          return []
        },
        async dispatch() {},
      },
    },
    handlers: { ...STRIPE_EVENT_HANDLERS, ...recipeExample },
  })
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

async function deliver(event: StripeObject) {
  writing = event.id
  return w.deliver(event)
}

describe('STRIPE_EVENT_HANDLERS, one fixture row per event type', () => {
  it.each(Object.entries(ROWS) as [HandledEventType, Row][])('%s', async (type, row) => {
    const ids = await scenario()
    for (const earlier of row.before?.(ids) ?? []) expect((await deliver(earlier)).body.status).toBe('processed')
    if (row.stripeHolds) w.fake.subscriptions.set(ids.subscriptionId, structuredClone(row.stripeHolds(ids)))
    const auditBefore = (await auditActions(w.host, ids.tenantId)).length
    const retrieves = w.fake.count('GET', `/v1/subscriptions/${ids.subscriptionId}`)

    const event = row.event(ids)
    expect(event.type).toBe(type)
    expect(await deliver(event)).toEqual({ statusCode: 200, body: { received: true, status: row.expect.ledger } })

    expect((await ledger(w.host, event.id))[0]).toMatchObject({ status: row.expect.ledger, type })
    expect((await auditActions(w.host, ids.tenantId)).slice(auditBefore)).toEqual(row.expect.audit)
    const state = await subscriptionState(w.host, ids.subscriptionId)
    if (row.expect.subscription) expect(state).toMatchObject(row.expect.subscription)
    else expect(state).toBeUndefined()
    expect(w.fake.count('GET', `/v1/subscriptions/${ids.subscriptionId}`) - retrieves).toBe(row.expect.refetched ? 1 : 0)
    expect((written.get(event.id) ?? []).map((i) => i.job)).toEqual(row.expect.followUps)

    // Exactly once: the same delivery again changes nothing and writes no follow-up.
    expect((await deliver(event)).body.status).toBe('duplicate')
    expect((written.get(event.id) ?? []).map((i) => i.job)).toEqual(row.expect.followUps)
  })

  it('covers every handled type, and the README lists exactly those', () => {
    expect(Object.keys(ROWS).sort()).toEqual(Object.keys(STRIPE_EVENT_HANDLERS).sort())
    expect([...HANDLED_EVENT_TYPES].sort()).toEqual(Object.keys(STRIPE_EVENT_HANDLERS).sort())
    const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8')
    const item = readme.split('\n- ').find((s) => s.startsWith('**Handled events**'))
    expect(item, 'README: the "- **Handled events**" item of the Billing section').toBeDefined()
    const listed = [...item!.matchAll(/`([a-z_]+(?:\.[a-z_]+)+)`/g)].map((m) => m[1]!)
    expect(listed.sort()).toEqual(Object.keys(STRIPE_EVENT_HANDLERS).sort())
  })

  it('answers an unhandled type 200 skipped, with no follow-up', async () => {
    const ids = await scenario()
    const event = fixture('customer.created', ids)
    expect(await deliver(event)).toEqual({ statusCode: 200, body: { received: true, status: 'skipped' } })
    expect((await ledger(w.host, event.id))[0]).toMatchObject({ status: 'skipped', error: 'unhandled event type' })
    expect(written.get(event.id)).toBeUndefined()
  })
})

/**
 * README "Extending" (c), applied: the entry below is all a new event needs (in the kit it goes into
 * STRIPE_EVENT_HANDLERS; here it is added to a copy, which the world's route uses).
 */
const recipeExample = {
  'charge.refunded': {
    async apply(tx, event) {
      const charge = event.data.object
      const customer = typeof charge.customer === 'string' ? charge.customer : charge.customer?.id
      const [row] = await tx<{ tenant_id: string }[]>`select tenant_id from core_subscriptions where stripe_customer_id = ${customer ?? ''}`
      if (!row) return { status: 'failed', reason: `no tenant for customer ${customer}` }
      await writeBillingAudit(tx, {
        action: 'billing.charge.refunded',
        tenantId: row.tenant_id,
        targetType: 'charge',
        targetId: charge.id,
        metadata: { amountRefunded: charge.amount_refunded, currency: charge.currency, eventId: event.id },
      })
      return { status: 'processed', billing: { tenantId: row.tenant_id } }
    },
    // Its own job in a real product (recipe b); an existing one here, to see it written with the change.
    followUps: (billing, event) => [
      { job: 'billing.event_effects', payload: { eventId: event.id, type: event.type, tenantId: billing.tenantId }, key: event.id },
    ],
  },
} satisfies StripeEventHandlers

describe('README "Extending" (c): a Stripe event is one handler entry', () => {
  it('an added entry is verified, recorded once, applied, audited and followed up, with nothing else changed', async () => {
    const ids = await scenario()
    await deliver(created(ids))
    const event = fixture('customer.created', ids)
    Object.assign(event, { id: `${event.id}refund`, type: 'charge.refunded' })
    event.data = {
      object: { id: `ch_${ids.eventSuffix}`, object: 'charge', customer: ids.customerId, amount_refunded: 1500, currency: 'eur', refunded: true },
    }
    expect(await deliver(event)).toEqual({ statusCode: 200, body: { received: true, status: 'processed' } })
    expect((await ledger(w.host, event.id))[0]).toMatchObject({ status: 'processed', type: 'charge.refunded' })
    expect((await auditActions(w.host, ids.tenantId)).at(-1)).toBe('billing.charge.refunded')
    expect(written.get(event.id)).toEqual([expect.objectContaining({ job: 'billing.event_effects', key: event.id })])
    expect(w.hookCalls.find((e) => e.eventId === event.id)).toMatchObject({ type: 'charge.refunded', tenantId: ids.tenantId })
    expect((await deliver(event)).body.status).toBe('duplicate')
  })
})
