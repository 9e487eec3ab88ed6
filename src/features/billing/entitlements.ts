/**
 * Entitlements: the one place that decides what a tenant may do. A tenant's plan is, in order:
 *   1. the plan of its best counting subscription (access.ts: active, trialing, or past_due within grace);
 *   2. else a plan a platform admin comped it (core_tenants.comp_plan_key, until comp_plan_expires_at);
 *   3. else the free plan (when it is seeded); else nothing at all (no features, no limits).
 * Its features gate routes (`config.billing.feature`), its tier level gates routes (`minTier`), its
 * limits cap what may be created (403 LIMIT_REACHED) and how often the tenant may call (429).
 *
 * Cached per process (every tenant request reads it) and dropped in every process through the
 * invalidation bus: by the Stripe webhook and the billing service after a subscription change, by the
 * admin comp route, and whenever the tenant's catalog entry is invalidated (the worker's reconcile). Time-bound answers (a grace period or a comp running out)
 * also carry `validUntil`, past which the cached copy is not used.
 */
import { and, eq, gt, isNull, or, sql } from 'drizzle-orm'
import { type PlanLimits, pricingPlans, subscriptions, tenants } from '../../../drizzle/host/schema.js'
import type { HostDatabase, HostDb } from '../../core/db/host.js'
import { AppError } from '../../core/lib/errors.js'
import { createInvalidatedCache, type InvalidationBus } from '../../core/lib/invalidated-cache.js'
import { isUuid } from '../../core/lib/uuid.js'
import { preparedFor } from '../../core/tenancy/prepared.js'
import { bestSubscriptionFirst, countingSubscriptionWhere, FREE_PLAN_KEY, graceEndsAt, graceStartedAt } from './subscriptions.js'

export type { PlanLimits }
export type LimitedResource = Exclude<keyof PlanLimits, 'requestsPerMinute' | 'storageMb' | 'realtimeConnections'>

export interface Entitlements {
  tenantId: string
  /** Where the plan comes from: a counting subscription, an admin's comp, the free plan, or none seeded. */
  source: 'subscription' | 'comp' | 'free' | 'none'
  planKey: string | null
  tierLevel: number
  features: readonly string[]
  limits: PlanLimits
  /** A comp's end (null: open-ended, or not a comp). */
  compExpiresAt: Date | null
  /** Epoch ms after which this answer may be wrong without any write (a comp or a grace period ending). */
  validUntil: number
}

export interface EntitlementsOptions {
  /** Days a past_due subscription still counts (config.billingGraceDays). */
  graceDays: number
  /** Plan a tenant has without a subscription or comp (default 'free'; null: none). */
  freePlanKey?: string | null
}

const s = subscriptions
const plan = {
  key: pricingPlans.key,
  tierLevel: pricingPlans.tierLevel,
  features: pricingPlans.features,
  limits: pricingPlans.limits,
}

const statements = preparedFor((db: HostDb) => ({
  subscribed: db
    .select({ ...plan, status: s.status, pastDueSince: graceStartedAt().mapWith((v) => (v ? new Date(v) : null)) })
    .from(s)
    .leftJoin(pricingPlans, eq(pricingPlans.id, s.planId))
    .where(countingSubscriptionWhere())
    .orderBy(...bestSubscriptionFirst())
    .limit(1)
    .prepare('billing_entitlements_subscription'),
  comped: db
    .select({ ...plan, expiresAt: tenants.compPlanExpiresAt })
    .from(tenants)
    .innerJoin(pricingPlans, eq(pricingPlans.key, tenants.compPlanKey))
    .where(
      and(
        eq(tenants.id, sql.placeholder('tenantId')),
        or(isNull(tenants.compPlanExpiresAt), gt(tenants.compPlanExpiresAt, sql`now()`)),
      ),
    )
    .prepare('billing_entitlements_comp'),
  free: db
    .select(plan)
    .from(pricingPlans)
    .where(and(eq(pricingPlans.key, sql.placeholder('key')), eq(pricingPlans.isActive, true)))
    .prepare('billing_entitlements_free'),
}))

const FOREVER = Number.MAX_SAFE_INTEGER

/** Read a tenant's entitlements from the host database (uncached). */
export async function resolveEntitlements(host: HostDatabase, tenantId: string, opts: EntitlementsOptions): Promise<Entitlements> {
  const q = statements(host.db)
  const of = (source: Entitlements['source'], p: { key: string; tierLevel: number; features: string[]; limits: PlanLimits }, validUntil = FOREVER, compExpiresAt: Date | null = null): Entitlements => ({
    tenantId,
    source,
    planKey: p.key,
    tierLevel: p.tierLevel,
    features: p.features ?? [],
    limits: p.limits ?? {},
    compExpiresAt,
    validUntil,
  })
  const freeKey = opts.freePlanKey === undefined ? FREE_PLAN_KEY : opts.freePlanKey
  const freePlan = async () => (freeKey ? (await q.free.execute({ key: freeKey }))[0] : undefined)
  if (isUuid(tenantId)) {
    const [sub] = await q.subscribed.execute({ tenantId, graceDays: opts.graceDays })
    if (sub) {
      // A past_due subscription stops counting when its grace runs out.
      const graceEnd = sub.status === 'past_due' && sub.pastDueSince ? graceEndsAt(sub.pastDueSince, opts.graceDays).getTime() : FOREVER
      // A paying tenant whose price no plan sells (a plan removed by hand): it pays, with the free plan's rights.
      const p = sub.key !== null ? { key: sub.key, tierLevel: sub.tierLevel ?? 0, features: sub.features ?? [], limits: sub.limits ?? {} } : await freePlan()
      const e = of('subscription', p ?? { key: '', tierLevel: 0, features: [], limits: {} }, graceEnd)
      return sub.key === null ? { ...e, planKey: null } : e
    }
    const [comp] = await q.comped.execute({ tenantId })
    if (comp) return of('comp', comp, comp.expiresAt?.getTime() ?? FOREVER, comp.expiresAt)
  }
  const free = await freePlan()
  if (free) return of('free', free)
  return { tenantId, source: 'none', planKey: null, tierLevel: 0, features: [], limits: {}, compExpiresAt: null, validUntil: FOREVER }
}

/** 403 FEATURE_NOT_IN_PLAN (with `feature` and `plan` in the body) unless the plan has the feature. */
export function requireFeature(e: Entitlements, feature: string): void {
  if (!e.features.includes(feature)) {
    throw new AppError(403, 'FEATURE_NOT_IN_PLAN', `Your plan does not include "${feature}"`, { feature, plan: e.planKey })
  }
}

/**
 * API keys (creating one, and every request made with one) need `api_access`. A deployment with no plan
 * at all (source 'none': config/plans.json never seeded) has no billing model to enforce: keys work.
 */
export function requireApiAccess(e: Entitlements): void {
  if (e.source !== 'none') requireFeature(e, 'api_access')
}

/** 402 SUBSCRIPTION_REQUIRED unless the tenant pays (or was comped a plan, which counts the same). */
export function requirePaidPlan(e: Entitlements): void {
  if (e.source !== 'subscription' && e.source !== 'comp') throw new AppError(402, 'SUBSCRIPTION_REQUIRED', 'An active subscription is required for this action')
}

/** 403 PLAN_TIER_TOO_LOW (with `minTier`, `tier` and `plan`) unless the plan's tier level is at least `minTier`. */
export function requireTier(e: Entitlements, minTier: number): void {
  if (e.tierLevel < minTier) {
    throw new AppError(403, 'PLAN_TIER_TOO_LOW', `This needs a plan of tier ${minTier} or above`, { minTier, tier: e.tierLevel, plan: e.planKey })
  }
}

/** The cap on a resource, or null when unlimited. */
export const limitOf = (e: Entitlements, resource: keyof PlanLimits): number | null => e.limits[resource] ?? null

/**
 * 403 LIMIT_REACHED (with `limit` and `resource`) when creating one more would pass the plan's cap.
 * `count` is how many there are now (asked only when there is a cap).
 */
export async function requireBelowLimit(e: Entitlements, resource: LimitedResource, count: () => Promise<number>): Promise<void> {
  const limit = limitOf(e, resource)
  if (limit === null) return
  if ((await count()) >= limit) {
    throw new AppError(403, 'LIMIT_REACHED', `Your plan allows ${limit} ${resource}; remove one or upgrade to add more`, { limit, resource, plan: e.planKey })
  }
}

export interface EntitlementsCache {
  readonly ready: Promise<void>
  /** The tenant's entitlements: cached, else read (one read per tenant at a time). */
  get(tenantId: string): Promise<Entitlements>
  /** `get` from the cache alone (still valid), or undefined: call `get`. */
  peek(tenantId: string): Entitlements | undefined
  /** Drop the tenant's cached entitlements in every process (after a subscription or comp change). */
  invalidate(tenantId: string): Promise<void>
  /** Drop every tenant's (after plans were seeded: features or limits may have changed). */
  invalidateAll(): Promise<void>
  close(): Promise<void>
}

export interface EntitlementsCacheDeps extends EntitlementsOptions {
  host: HostDatabase
  bus: InvalidationBus
  /** The pub/sub channel (`${REDIS_PREFIX}:entitlements`). */
  channel: string
  ttlS: number
  maxEntries?: number
  logger?: { error(obj: object, msg: string): void }
  /**
   * The tenant catalog's channel: a tenant invalidated there is dropped here too. Whatever changes a
   * plan invalidates the catalog (plan_tier lives there), the worker's nightly reconcile included, so
   * no writer is missed; other catalog changes only cost a re-read.
   */
  catalogChannel?: string
}

const ALL = '*'

export function createEntitlementsCache(deps: EntitlementsCacheDeps): EntitlementsCache {
  const cache = createInvalidatedCache<string, Entitlements>({
    bus: deps.bus,
    channel: deps.channel,
    max: deps.maxEntries ?? 10_000,
    ttlMs: deps.ttlS * 1000,
    load: (tenantId) => resolveEntitlements(deps.host, tenantId, deps),
    onMessage(message, c) {
      if (message === ALL) c.clear()
      else c.drop(message)
    },
  })
  const catalog = deps.catalogChannel
    ? deps.bus.listen(deps.catalogChannel, {
        message(message) {
          // The catalog's format: {"id": ..., "from": ...}, or a bare id.
          let id: unknown = message
          try {
            if (message.startsWith('{')) id = (JSON.parse(message) as { id?: unknown }).id
          } catch {
            return
          }
          if (typeof id === 'string') cache.drop(id.toLowerCase())
        },
        reconnected: () => cache.clear(),
      })
    : undefined
  const publish = async (message: string) => {
    try {
      await cache.publish(message)
    } catch (err) {
      // The write happened; other processes catch up when their entry expires (ttlS).
      deps.logger?.error({ err, channel: deps.channel, message }, 'entitlements: invalidation not published; other processes serve the old plan until TTL')
    }
  }
  return {
    ready: catalog ? Promise.all([cache.ready, catalog.ready]).then(() => undefined) : cache.ready,
    peek(tenantId) {
      const cached = cache.get(tenantId.toLowerCase())
      return cached && cached.validUntil > Date.now() ? cached : undefined
    },
    async get(tenantId) {
      const id = tenantId.toLowerCase()
      const cached = cache.get(id)
      if (cached && cached.validUntil > Date.now()) return cached
      if (cached) cache.drop(id)
      return (await cache.load(id))!
    },
    async invalidate(tenantId) {
      const id = tenantId.toLowerCase()
      cache.drop(id)
      await publish(id)
    },
    async invalidateAll() {
      cache.clear()
      await publish(ALL)
    },
    async close() {
      await catalog?.stop()
      await cache.close()
    },
  }
}
