/**
 * Gating by billing state (hasActiveSubscription / requireActiveSubscription / checkFeatureAccess).
 * A subscription counts when it is active or trialing, or past_due for at most
 * `graceDays` since the payment failed. Which features a tenant has is entitlements.ts's answer
 * (checkFeatureAccess asks it): the best counting subscription's plan, else a comp, else the free plan.
 */
import { eq } from 'drizzle-orm'
import { pricingPlans, subscriptions } from '../../../drizzle/host/schema.js'
import type { HostDatabase, HostDb } from '../../core/db/host.js'
import { AppError } from '../../core/lib/errors.js'
import { preparedFor } from '../../core/tenancy/prepared.js'
import { isUuid } from '../../core/lib/uuid.js'
import { requireFeature, resolveEntitlements } from './entitlements.js'
import { bestSubscriptionFirst, countingSubscriptionWhere } from './subscriptions.js'

export interface AccessOptions {
  /** Days a past_due subscription still counts (config.billingGraceDays). */
  graceDays: number
  /** Plan whose features a tenant has without a subscription (default 'free'; null: none). */
  freePlanKey?: string | null
}

export interface ActiveSubscription {
  id: string
  stripeSubscriptionId: string
  status: string
  planKey: string | null
  tierLevel: number | null
  features: string[]
  currentPeriodEnd: Date | null
  cancelAtPeriodEnd: boolean
  pastDueSince: Date | null
}

const s = subscriptions

/** Prepared (the billing guard runs these on every gated request; drizzle's ad-hoc queries are sent unprepared). */
const statements = preparedFor((db: HostDb) => ({
  activeSubscription: db
    .select({
      id: s.id,
      stripeSubscriptionId: s.stripeSubscriptionId,
      status: s.status,
      planKey: pricingPlans.key,
      tierLevel: pricingPlans.tierLevel,
      features: pricingPlans.features,
      currentPeriodEnd: s.currentPeriodEnd,
      cancelAtPeriodEnd: s.cancelAtPeriodEnd,
      pastDueSince: s.pastDueSince,
    })
    .from(s)
    .leftJoin(pricingPlans, eq(pricingPlans.id, s.planId))
    .where(countingSubscriptionWhere())
    .orderBy(...bestSubscriptionFirst())
    .limit(1)
    .prepare('billing_active_subscription'),
}))

/** The tenant's best subscription that currently grants access, or null. */
export async function getActiveSubscription(host: HostDatabase, tenantId: string, opts: AccessOptions): Promise<ActiveSubscription | null> {
  if (!isUuid(tenantId)) return null
  const [row] = await statements(host.db).activeSubscription.execute({ tenantId, graceDays: opts.graceDays })
  return row ? { ...row, features: row.features ?? [] } : null
}

export async function hasActiveSubscription(host: HostDatabase, tenantId: string, opts: AccessOptions): Promise<boolean> {
  return (await getActiveSubscription(host, tenantId, opts)) !== null
}

/** 402 SUBSCRIPTION_REQUIRED unless the tenant has a counting subscription. */
export async function requireActiveSubscription(host: HostDatabase, tenantId: string, opts: AccessOptions): Promise<ActiveSubscription> {
  const sub = await getActiveSubscription(host, tenantId, opts)
  if (!sub) throw new AppError(402, 'SUBSCRIPTION_REQUIRED', 'An active subscription is required for this action')
  return sub
}

/**
 * 403 FEATURE_NOT_IN_PLAN (with `feature` and `plan` in the body) unless the tenant's plan includes the
 * feature: the plan entitlements.ts decides (subscription, else comp, else free), read uncached.
 */
export async function checkFeatureAccess(host: HostDatabase, tenantId: string, feature: string, opts: AccessOptions): Promise<void> {
  requireFeature(await resolveEntitlements(host, tenantId, opts), feature)
}
