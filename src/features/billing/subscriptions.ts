/**
 * The one place Stripe subscription state lands in core_subscriptions, shared by webhooks, the checkout
 * success redirect and the service's own changes, so all of them follow the same ordering rule:
 *
 *   each row carries `stripe_updated_at`, the Stripe time (seconds) of the state it holds.
 *   - an event snapshot newer than the row is applied; an older one is stale and ignored;
 *   - an event snapshot from the same second is a tie: the caller refetches the subscription from Stripe;
 *   - a fetched object is authoritative: applied unless the row already reflects a later event, and
 *     stamped with the time it was fetched for (the event's time), so later events still apply.
 *
 * The webhooks call in with the postgres.js transaction they open (`Tx`); the queries here run drizzle
 * on that same transaction (hostDbOn), except the one conditional UPDATE every event runs (writeIfNewer).
 */
import { and, desc, eq, gt, inArray, or, sql } from 'drizzle-orm'
import type Stripe from 'stripe'
import { uuidv7 } from 'uuidv7'
import { pricingPlans, subscriptions, tenants, users } from '../../../drizzle/host/schema.js'
import { type HostDb, hostDbOn, type RawSql } from '../../core/db/host.js'
import { iso } from '../../core/lib/dates.js'
import { asDate, type Tx, writeBillingAudit } from './audit.js'
import { isUuid } from '../../core/lib/uuid.js'

export type { Tx }

/** Subscription statuses that grant access (past_due only within the grace period, see access.ts). */
export const LIVE_STATUSES = ['active', 'trialing', 'past_due'] as const
/** The plan_tier a tenant falls back to without a live subscription. */
export const FREE_PLAN_KEY = 'free'

/** When a past_due subscription's grace started: the payment failure, or without that stamp its last Stripe change. */
export const graceStartedAt = () => sql<Date | null>`coalesce(${subscriptions.pastDueSince}, ${subscriptions.stripeUpdatedAt})`

/**
 * The one rule for a subscription that counts (grants access), for prepared statements with the
 * placeholders `tenantId` and `graceDays`: the tenant's, and active or trialing, or past_due for at most
 * `graceDays` since its grace started.
 */
export const countingSubscriptionWhere = () =>
  and(
    eq(subscriptions.tenantId, sql.placeholder('tenantId')),
    or(
      inArray(subscriptions.status, ['active', 'trialing']),
      and(eq(subscriptions.status, 'past_due'), gt(graceStartedAt(), sql`now() - make_interval(days => ${sql.placeholder('graceDays')})`)),
    ),
  )

/** When the grace period of a payment failure ends: past it, a past_due subscription no longer counts. */
export function graceEndsAt(pastDueSince: Date, graceDays: number): Date {
  return new Date(pastDueSince.getTime() + graceDays * 86_400_000)
}

/** Which counting subscription is the tenant's: the highest plan tier, then the latest Stripe state. */
export const bestSubscriptionFirst = () => [sql`coalesce(${pricingPlans.tierLevel}, -1) desc`, desc(subscriptions.stripeUpdatedAt)] as const

export interface SubscriptionSnapshot {
  stripeSubscriptionId: string
  stripeCustomerId: string
  status: string
  priceId: string | null
  interval: string | null
  currentPeriodStart: Date | null
  currentPeriodEnd: Date | null
  trialEnd: Date | null
  cancelAtPeriodEnd: boolean
  canceledAt: Date | null
  metadataTenantId: string | undefined
  metadataUserId: string | undefined
  /** Every item's price and period; the plan is whichever item's price belongs to a known plan (add-ons may come first). */
  items: SnapshotItem[]
}

export interface SnapshotItem {
  priceId: string | null
  interval: string | null
  currentPeriodStart: Date | null
  currentPeriodEnd: Date | null
}

const date = (s: number | null | undefined) => (typeof s === 'number' ? new Date(s * 1000) : null)
export const idOf = (x: string | { id: string } | null | undefined) => (typeof x === 'string' ? x : (x?.id ?? null))

/** What we keep of a Stripe Subscription. Periods live on the items since API 2025-03-31; older payloads had them on the subscription. */
export function snapshotOf(sub: Stripe.Subscription): SubscriptionSnapshot {
  const legacy = sub as unknown as { current_period_start?: number; current_period_end?: number }
  const items: SnapshotItem[] = (Array.isArray(sub.items?.data) ? sub.items.data : []).map((item) => ({
    priceId: item?.price?.id ?? null,
    interval: item?.price?.recurring?.interval ?? null,
    currentPeriodStart: date(item?.current_period_start ?? legacy.current_period_start),
    currentPeriodEnd: date(item?.current_period_end ?? legacy.current_period_end),
  }))
  // Until the plan item is known (applySubscription looks prices up), the first item stands in.
  const first = items[0]
  return {
    stripeSubscriptionId: sub.id,
    stripeCustomerId: idOf(sub.customer as string | { id: string }) ?? '',
    status: sub.status,
    priceId: first?.priceId ?? null,
    interval: first?.interval ?? null,
    currentPeriodStart: first?.currentPeriodStart ?? date(legacy.current_period_start),
    currentPeriodEnd: first?.currentPeriodEnd ?? date(legacy.current_period_end),
    items,
    trialEnd: date(sub.trial_end),
    cancelAtPeriodEnd: Boolean(sub.cancel_at_period_end),
    canceledAt: date(sub.canceled_at),
    metadataTenantId: sub.metadata?.tenant_id,
    metadataUserId: sub.metadata?.user_id,
  }
}

export interface PlanRef {
  id: string
  key: string
}

/** Price id → plan, cached briefly: plans change on deploy (db:seed), prices arrive on every event. */
export type PlanLookup = (tx: RawSql, priceId: string | null) => Promise<PlanRef | null>

export function createPlanLookup(ttlMs = 30_000): PlanLookup {
  const cache = new Map<string, { plan: PlanRef | null; until: number }>()
  return async (tx, priceId) => {
    if (!priceId) return null
    const hit = cache.get(priceId)
    if (hit && hit.until > Date.now()) return hit.plan
    const [plan = null] = await hostDbOn(tx)
      .select({ id: pricingPlans.id, key: pricingPlans.key })
      .from(pricingPlans)
      .where(or(eq(pricingPlans.stripePriceMonthly, priceId), eq(pricingPlans.stripePriceYearly, priceId)))
      .orderBy(desc(pricingPlans.isActive))
      .limit(1)
    if (cache.size > 1000) cache.clear()
    cache.set(priceId, { plan, until: Date.now() + ttlMs })
    return plan
  }
}

export interface ApplyInput {
  snapshot: SubscriptionSnapshot
  /** The Stripe time (unix seconds) the snapshot reflects, or was fetched for. */
  at: number
  source: 'event' | 'fetched'
  /** Known tenant (a checkout session names it); otherwise taken from the subscription's metadata. */
  tenantId?: string
  userId?: string
  /** invoice.payment_failed: when the payment failed (past_due_since), if the row wasn't already past due. */
  pastDueAt?: number
  plans: PlanLookup
  audit: { eventId?: string; eventType?: string; actorUserId?: string | null; reason: string }
}

export interface AppliedSubscription {
  id: string
  tenantId: string
  stripeSubscriptionId: string
  status: string
  previousStatus: string | null
  planKey: string | null
  created: boolean
  /** False when the new state equals the stored one (only the watermark moved): no audit row, no plan change. */
  changed: boolean
}

export type ApplyOutcome =
  | { kind: 'applied'; subscription: AppliedSubscription }
  | { kind: 'stale'; storedAt: number }
  | { kind: 'tie' }
  | { kind: 'no-tenant' }

interface StoredRow {
  id: string
  tenant_id: string
  status: string
  plan_id: string | null
  stripe_price_id: string | null
  current_period_end: Date | null
  trial_end: Date | null
  cancel_at_period_end: boolean
  canceled_at: Date | null
  past_due_since: Date | null
  stripe_updated_at: Date
}

const seconds = (d: Date) => Math.floor(d.getTime() / 1000)

function normalise(r: StoredRow): StoredRow {
  return {
    ...r,
    current_period_end: asDate(r.current_period_end),
    trial_end: asDate(r.trial_end),
    canceled_at: asDate(r.canceled_at),
    past_due_since: asDate(r.past_due_since),
    stripe_updated_at: asDate(r.stripe_updated_at)!,
  }
}
const sameTime = (a: Date | null, b: Date | null) => (a === null || b === null ? a === b : a.getTime() === b.getTime())

/**
 * The tenant a subscription belongs to: the caller's, the metadata's, or the tenant whose own Stripe
 * customer it bills (core_tenants.stripe_customer_id). Never "another tenant billed to the same customer":
 * a customer is one tenant's, so a subscription that maps to none is not guessed onto one.
 */
export async function subscriptionTenant(tx: Tx | HostDb, s: SubscriptionSnapshot, hint?: string): Promise<string | null> {
  const db = drizzleOn(tx)
  for (const candidate of [hint, s.metadataTenantId]) {
    if (!isUuid(candidate)) continue
    const [t] = await db.select({ id: tenants.id }).from(tenants).where(eq(tenants.id, candidate))
    if (t) return t.id
  }
  if (!s.stripeCustomerId) return null
  const [byCustomer] = await db.select({ id: tenants.id }).from(tenants).where(eq(tenants.stripeCustomerId, s.stripeCustomerId))
  return byCustomer?.id ?? null
}

async function existingUser(db: HostDb, ...candidates: (string | undefined)[]): Promise<string | null> {
  for (const c of candidates) {
    if (!isUuid(c)) continue
    const [u] = await db.select({ id: users.id }).from(users).where(eq(users.id, c))
    if (u) return u.id
  }
  return null
}

const drizzleOn = (tx: Tx | HostDb): HostDb => (typeof tx === 'function' ? hostDbOn(tx) : tx)

/** Keep core_tenants.plan_tier equal to the best live subscription's plan ('free' without one). */
export async function refreshTenantPlanTier(tx: Tx | HostDb, tenantId: string): Promise<void> {
  const db = drizzleOn(tx)
  const best = db
    .select({ key: pricingPlans.key })
    .from(subscriptions)
    .innerJoin(pricingPlans, eq(pricingPlans.id, subscriptions.planId))
    .where(and(eq(subscriptions.tenantId, tenantId), inArray(subscriptions.status, LIVE_STATUSES)))
    .orderBy(desc(pricingPlans.tierLevel), desc(subscriptions.stripeUpdatedAt))
    .limit(1)
  const planTier = sql<string>`coalesce((${best}), ${FREE_PLAN_KEY})`
  await db
    .update(tenants)
    .set({ planTier })
    .where(and(eq(tenants.id, tenantId), sql`${tenants.planTier} is distinct from ${planTier}`))
}

/**
 * The plan item of a subscription: the first item whose price belongs to a known plan (add-ons may be
 * listed before it), or null. The webhooks, the success redirect and changePlan all pick it this way.
 */
export async function findPlanItem<T>(
  tx: RawSql,
  items: readonly T[],
  priceOf: (item: T) => string | null,
  plans: PlanLookup,
): Promise<{ item: T; plan: PlanRef } | null> {
  for (const item of items) {
    const plan = await plans(tx, priceOf(item))
    if (plan) return { item, plan }
  }
  return null
}

/** The snapshot as of its plan item (findPlanItem), else as of the first item. */
async function onPlanItem(tx: Tx, s: SubscriptionSnapshot, plans: PlanLookup): Promise<{ snapshot: SubscriptionSnapshot; plan: PlanRef | null }> {
  const found = await findPlanItem(tx, s.items ?? [], (item) => item.priceId, plans)
  if (found) return { snapshot: { ...s, ...found.item }, plan: found.plan }
  return { snapshot: s, plan: await plans(tx, s.priceId) }
}

export async function applySubscription(tx: Tx, given: ApplyInput): Promise<ApplyOutcome> {
  const db = hostDbOn(tx)
  const { snapshot: s, plan } = await onPlanItem(tx, given.snapshot, given.plans)
  const input: ApplyInput = { ...given, snapshot: s }
  for (let attempt = 0; attempt < 2; attempt++) {
    // The common case (newer than the row) in one round trip: lock, compare, write, and read back the previous state.
    const [hit] = await writeIfNewer(tx, input, plan)
    if (hit) return { kind: 'applied', subscription: await afterUpdate(db, input, plan, normalise(hit), asDate(hit.new_past_due_since)) }

    const [row] = await db
      .select({ stripeUpdatedAt: subscriptions.stripeUpdatedAt })
      .from(subscriptions)
      .where(eq(subscriptions.stripeSubscriptionId, s.stripeSubscriptionId))
      .for('update')
    if (row) {
      const storedAt = seconds(row.stripeUpdatedAt)
      if (input.at < storedAt) return { kind: 'stale', storedAt }
      if (input.at === storedAt && input.source === 'event') return { kind: 'tie' }
      continue // inserted by another transaction between our two statements: apply on the next pass
    }

    const tenantId = await subscriptionTenant(db, s, input.tenantId)
    if (!tenantId) return { kind: 'no-tenant' }
    const inserted = await insert(db, input, plan, tenantId)
    if (inserted) return { kind: 'applied', subscription: inserted }
    // Another transaction inserted the same subscription meanwhile (ON CONFLICT waited for it): compare against its row.
  }
  throw new Error(`subscription ${s.stripeSubscriptionId} could not be locked`)
}

/**
 * UPDATE … FROM a locked sub-select of the same row: the sub-select still sees the previous values, so
 * RETURNING gives what the row held before (PG15 has no RETURNING OLD). Applies when the input is newer
 * than the row, or a fetched object from the same second. past_due_since keeps the date the row first
 * went past due, else takes the payment failure's time (or the input's).
 * Raw SQL: every event runs it, and it needs RETURNING of the pre-update row through a locked self-join.
 */
function writeIfNewer(tx: Tx, input: ApplyInput, plan: PlanRef | null) {
  const s = input.snapshot
  const at = iso(new Date(input.at * 1000))
  const pastDueAt = iso(new Date((input.pastDueAt ?? input.at) * 1000))
  return tx<(StoredRow & { new_past_due_since: Date | string | null })[]>`
    update core_subscriptions cur set
      plan_id = ${plan?.id ?? null}, stripe_customer_id = ${s.stripeCustomerId}, stripe_price_id = ${s.priceId}, status = ${s.status},
      billing_interval = ${s.interval}, current_period_start = ${iso(s.currentPeriodStart)}, current_period_end = ${iso(s.currentPeriodEnd)},
      trial_end = ${iso(s.trialEnd)}, cancel_at_period_end = ${s.cancelAtPeriodEnd}, canceled_at = ${iso(s.canceledAt)},
      past_due_since = case when ${s.status} = 'past_due'
        then coalesce(case when prev.status = 'past_due' then prev.past_due_since end, ${pastDueAt}::timestamptz) end,
      stripe_updated_at = ${at}, updated_at = now()
    from (
      select id, tenant_id, status, plan_id, stripe_price_id, current_period_end, trial_end, cancel_at_period_end, canceled_at,
             past_due_since, stripe_updated_at
      from core_subscriptions where stripe_subscription_id = ${s.stripeSubscriptionId} for update
    ) prev
    where cur.id = prev.id and (prev.stripe_updated_at < ${at} or (${input.source === 'fetched'} and prev.stripe_updated_at = ${at}))
    returning prev.id, prev.tenant_id, prev.status, prev.plan_id, prev.stripe_price_id, prev.current_period_end, prev.trial_end,
              prev.cancel_at_period_end, prev.canceled_at, prev.past_due_since, prev.stripe_updated_at, cur.past_due_since as new_past_due_since`
}

async function insert(db: HostDb, input: ApplyInput, plan: PlanRef | null, tenantId: string): Promise<AppliedSubscription | null> {
  const s = input.snapshot
  const userId = await existingUser(db, input.userId, s.metadataUserId)
  const id = uuidv7()
  const rows = await db
    .insert(subscriptions)
    .values({
      id,
      tenantId,
      userId,
      planId: plan?.id ?? null,
      stripeSubscriptionId: s.stripeSubscriptionId,
      stripeCustomerId: s.stripeCustomerId,
      stripePriceId: s.priceId,
      status: s.status,
      billingInterval: s.interval,
      currentPeriodStart: s.currentPeriodStart,
      currentPeriodEnd: s.currentPeriodEnd,
      trialEnd: s.trialEnd,
      cancelAtPeriodEnd: s.cancelAtPeriodEnd,
      canceledAt: s.canceledAt,
      pastDueSince: s.status === 'past_due' ? new Date((input.pastDueAt ?? input.at) * 1000) : null,
      stripeUpdatedAt: new Date(input.at * 1000),
    })
    .onConflictDoNothing({ target: subscriptions.stripeSubscriptionId })
    .returning({ id: subscriptions.id })
  if (rows.length === 0) return null
  const applied: AppliedSubscription = {
    id,
    tenantId,
    stripeSubscriptionId: s.stripeSubscriptionId,
    status: s.status,
    previousStatus: null,
    planKey: plan?.key ?? null,
    created: true,
    changed: true,
  }
  await Promise.all([
    writeBillingAudit(db, {
      action: 'billing.subscription.created',
      tenantId,
      actorUserId: input.audit.actorUserId ?? null,
      targetType: 'subscription',
      targetId: id,
      metadata: auditMetadata(input, applied),
    }),
    refreshTenantPlanTier(db, tenantId),
  ])
  return applied
}

/** After an update: audit a real change and keep the tenant's plan tier; both statements are pipelined. */
async function afterUpdate(
  db: HostDb,
  input: ApplyInput,
  plan: PlanRef | null,
  prev: StoredRow,
  pastDueSince: Date | null,
): Promise<AppliedSubscription> {
  const s = input.snapshot
  const planId = plan?.id ?? null
  const changed =
    prev.status !== s.status ||
    prev.plan_id !== planId ||
    prev.stripe_price_id !== s.priceId ||
    prev.cancel_at_period_end !== s.cancelAtPeriodEnd ||
    !sameTime(prev.current_period_end, s.currentPeriodEnd) ||
    !sameTime(prev.trial_end, s.trialEnd) ||
    !sameTime(prev.canceled_at, s.canceledAt) ||
    !sameTime(prev.past_due_since, pastDueSince)
  const applied: AppliedSubscription = {
    id: prev.id,
    tenantId: prev.tenant_id,
    stripeSubscriptionId: s.stripeSubscriptionId,
    status: s.status,
    previousStatus: prev.status,
    planKey: plan?.key ?? null,
    created: false,
    changed,
  }
  if (!changed) return applied
  const action = s.status === 'canceled' && prev.status !== 'canceled' ? 'billing.subscription.canceled' : 'billing.subscription.updated'
  await Promise.all([
    writeBillingAudit(db, {
      action,
      tenantId: prev.tenant_id,
      actorUserId: input.audit.actorUserId ?? null,
      targetType: 'subscription',
      targetId: prev.id,
      metadata: auditMetadata(input, applied),
    }),
    prev.status !== s.status || prev.plan_id !== planId ? refreshTenantPlanTier(db, prev.tenant_id) : undefined,
  ])
  return applied
}

function auditMetadata(input: ApplyInput, a: AppliedSubscription): Record<string, unknown> {
  return {
    stripeSubscriptionId: a.stripeSubscriptionId,
    status: a.status,
    previousStatus: a.previousStatus,
    plan: a.planKey,
    cancelAtPeriodEnd: input.snapshot.cancelAtPeriodEnd,
    stripeTime: new Date(input.at * 1000).toISOString(),
    source: input.source,
    reason: input.audit.reason,
    ...(input.audit.eventId ? { eventId: input.audit.eventId, eventType: input.audit.eventType } : {}),
  }
}
