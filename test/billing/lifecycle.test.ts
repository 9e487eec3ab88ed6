/**
 * A whole subscription lifecycle (created → updated trialing→active → invoice.payment_failed →
 * invoice.paid → updated cancel_at_period_end → deleted) delivered in order, then in many seeded random
 * permutations with redeliveries, sequentially and concurrently: every delivery converges to the
 * in-order final state, each event is recorded once, and the subscription is created once.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createTestEnv, type TestEnv } from '../helpers/test-env.js'
import type { StripeObject } from '../helpers/fake-stripe.js'
import {
  type BillingWorld,
  fixture,
  freshIds,
  type Ids,
  insertTenant,
  insertUser,
  LIFECYCLE,
  ledger,
  startBillingWorld,
  subscriptionState,
} from './helpers.js'

let env: TestEnv
let w: BillingWorld
let tenantId: string
let userId: string

beforeAll(async () => {
  env = await createTestEnv()
  w = await startBillingWorld(env)
  tenantId = await insertTenant(w.host, w.config)
  userId = (await insertUser(w.host)).id
})

afterAll(async () => {
  await w?.close()
  await env?.cleanup()
})

/** mulberry32: a tiny seeded PRNG, so a failing permutation can be replayed from its seed. */
function rng(seed: number) {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

function shuffle<T>(xs: T[], rand: () => number): T[] {
  const a = [...xs]
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1))
    ;[a[i], a[j]] = [a[j]!, a[i]!]
  }
  return a
}

interface Lifecycle {
  ids: Ids
  events: StripeObject[]
  /** Stripe's copy of the subscription right after each event (what a refetch returns at that moment). */
  stripeAfter: StripeObject[]
}

function lifecycle(): Lifecycle {
  const ids = freshIds(tenantId, userId)
  const events = LIFECYCLE.map((name) => fixture(name, ids))
  const [created, active, , , cancel, deleted] = events.map((e) => e.data.object)
  const renewal = {
    ...structuredClone(cancel),
    cancel_at: null,
    cancel_at_period_end: false,
    canceled_at: null,
    cancellation_details: { comment: null, feedback: null, reason: null },
  }
  const stripeAfter = [created, active, { ...renewal, status: 'past_due' }, { ...renewal, status: 'active' }, cancel, deleted]
  return { ids, events, stripeAfter }
}

function stripeHolds(sub: StripeObject) {
  w.fake.subscriptions.set(String(sub.id), structuredClone(sub))
}

/** The state to compare: everything but the per-run customer id. */
async function finalState(subscriptionId: string) {
  const state = await subscriptionState(w.host, subscriptionId)
  if (!state) return undefined
  const { stripe_customer_id: _customer, ...rest } = state
  return rest
}

async function createdAudits(subscriptionId: string): Promise<number> {
  const [row] = await w.host.sql<{ n: number }[]>`
    select count(*)::int as n from sys_audit_logs
    where action = 'billing.subscription.created' and metadata->>'stripeSubscriptionId' = ${subscriptionId}`
  return row!.n
}

async function inOrderReference(steps: number) {
  const l = lifecycle()
  const statuses: string[] = []
  const states: unknown[] = []
  for (let i = 0; i < steps; i++) {
    stripeHolds(l.stripeAfter[i]!)
    statuses.push(String((await w.deliver(l.events[i]!)).body.status))
    states.push(await finalState(l.ids.subscriptionId))
  }
  return { statuses, states, final: states.at(-1), l }
}

describe('subscription lifecycle', () => {
  it('in order: every step is processed and lands the expected state', async () => {
    const { statuses, states, l } = await inOrderReference(LIFECYCLE.length)
    expect(statuses).toEqual(Array(LIFECYCLE.length).fill('processed'))
    const t = l.events.map((e) => new Date(e.created * 1000))
    expect(states).toMatchObject([
      { status: 'trialing', plan: 'pro', past_due_since: null, stripe_updated_at: t[0] },
      { status: 'active', past_due_since: null, stripe_updated_at: t[1] },
      { status: 'past_due', past_due_since: t[2], stripe_updated_at: t[2] },
      { status: 'active', past_due_since: null, stripe_updated_at: t[3] },
      { status: 'active', cancel_at_period_end: true, stripe_updated_at: t[4] },
      { status: 'canceled', cancel_at_period_end: true, canceled_at: t[4], past_due_since: null, stripe_updated_at: t[5] },
    ])
    const [tenant] = await w.host.sql`select plan_tier from core_tenants where id = ${tenantId}`
    expect(tenant!.plan_tier).toBe('free') // no live subscription left
  })

  for (const [name, steps, runs] of [
    ['the whole lifecycle', LIFECYCLE.length, 50],
    ['the lifecycle up to invoice.paid (last event carries no snapshot)', 4, 25],
  ] as const) {
    it(`${name}: ${runs} seeded permutations with redeliveries converge to the in-order state`, async () => {
      const reference = (await inOrderReference(steps)).final
      expect(reference).toBeDefined()
      for (let seed = 1; seed <= runs; seed++) {
        const rand = rng(seed * 7919 + steps)
        const l = lifecycle()
        // Late or shuffled deliveries: by now Stripe's copy is the final one.
        stripeHolds(l.stripeAfter[steps - 1]!)
        const events = l.events.slice(0, steps)
        const order = shuffle(events, rand)
        // Redeliver a couple of random events at random positions.
        for (let k = 0; k < 2; k++) order.splice(Math.floor(rand() * (order.length + 1)), 0, events[Math.floor(rand() * steps)]!)
        const statuses: unknown[] = []
        for (const ev of order) {
          const res = await w.deliver(ev)
          expect(res.statusCode, `seed ${seed}`).toBe(200)
          statuses.push(res.body.status)
        }
        expect(
          statuses.filter((s) => s === 'failed'),
          `seed ${seed}`,
        ).toEqual([])
        expect(statuses.filter((s) => s === 'duplicate').length, `seed ${seed}`).toBe(2)
        expect(await finalState(l.ids.subscriptionId), `seed ${seed}: ${order.map((e) => e.type).join(', ')}`).toEqual(reference)
        for (const ev of events) expect(await ledger(w.host, ev.id)).toHaveLength(1)
        expect(await createdAudits(l.ids.subscriptionId)).toBe(1)
      }
    })
  }

  it('10 fully concurrent deliveries of the shuffled lifecycle (with redeliveries) converge too', async () => {
    const reference = (await inOrderReference(LIFECYCLE.length)).final
    for (let seed = 1; seed <= 10; seed++) {
      const rand = rng(seed)
      const l = lifecycle()
      stripeHolds(l.stripeAfter.at(-1)!)
      const order = shuffle([...l.events, ...l.events.slice(0, 2)], rand)
      const results = await Promise.all(order.map((ev) => w.deliver(ev)))
      expect(results.map((r) => r.statusCode)).toEqual(Array(order.length).fill(200))
      expect(results.filter((r) => r.body.status === 'duplicate')).toHaveLength(2)
      expect(await finalState(l.ids.subscriptionId), `seed ${seed}`).toEqual(reference)
      expect(await createdAudits(l.ids.subscriptionId)).toBe(1)
    }
  })
})
