/**
 * Gating by billing state (the seed's has_active_subscription / require_active_subscription /
 * check_feature_access). A subscription counts when it is active or trialing, or past_due for at most
 * `graceDays` since the payment failed. Features come from the best counting subscription's plan; a
 * tenant without one gets the free plan's features.
 */
import type { HostDatabase } from '../../core/db/host.js'
import { AppError } from '../../core/lib/errors.js'
import { asDate } from './audit.js'
import { isUuid } from '../../core/lib/uuid.js'
import { FREE_PLAN_KEY } from './subscriptions.js'

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

interface Row {
  id: string
  stripe_subscription_id: string
  status: string
  plan_key: string | null
  tier_level: number | null
  features: string[] | null
  current_period_end: Date | null
  cancel_at_period_end: boolean
  past_due_since: Date | null
}

/** The tenant's best subscription that currently grants access, or null. */
export async function getActiveSubscription(host: HostDatabase, tenantId: string, opts: AccessOptions): Promise<ActiveSubscription | null> {
  if (!isUuid(tenantId)) return null
  const [row] = await host.sql<Row[]>`
    select s.id, s.stripe_subscription_id, s.status, p.key as plan_key, p.tier_level, p.features, s.current_period_end,
           s.cancel_at_period_end, s.past_due_since
    from core_subscriptions s left join core_pricing_plans p on p.id = s.plan_id
    where s.tenant_id = ${tenantId}
      and (s.status in ('active', 'trialing')
           or (s.status = 'past_due' and coalesce(s.past_due_since, s.stripe_updated_at) > now() - make_interval(days => ${opts.graceDays})))
    order by coalesce(p.tier_level, -1) desc, s.stripe_updated_at desc
    limit 1`
  if (!row) return null
  return {
    id: row.id,
    stripeSubscriptionId: row.stripe_subscription_id,
    status: row.status,
    planKey: row.plan_key,
    tierLevel: row.tier_level,
    features: row.features ?? [],
    currentPeriodEnd: asDate(row.current_period_end),
    cancelAtPeriodEnd: row.cancel_at_period_end,
    pastDueSince: asDate(row.past_due_since),
  }
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

/** 403 FEATURE_NOT_IN_PLAN (with `feature` and `plan` in the body) unless the tenant's plan includes the feature. */
export async function checkFeatureAccess(host: HostDatabase, tenantId: string, feature: string, opts: AccessOptions): Promise<void> {
  const sub = await getActiveSubscription(host, tenantId, opts)
  let planKey = sub?.planKey ?? null
  let features = sub?.features ?? []
  const freeKey = opts.freePlanKey === undefined ? FREE_PLAN_KEY : opts.freePlanKey
  if (!sub && freeKey) {
    const [free] = await host.sql<{ features: string[] }[]>`select features from core_pricing_plans where key = ${freeKey} and is_active`
    if (free) {
      planKey = freeKey
      features = free.features
    }
  }
  if (!features.includes(feature)) {
    throw new AppError(403, 'FEATURE_NOT_IN_PLAN', `Your plan does not include "${feature}"`, { feature, plan: planKey })
  }
}
