/**
 * Billing for the app: `fastify.billing` (the Stripe service; every call answers 503 BILLING_DISABLED
 * without STRIPE_SECRET_KEY), `fastify.entitlements` (what each tenant's plan allows, entitlements.ts),
 * the per-request plan checks on tenant routes (tenant-requests.ts: api_access for API keys, requests
 * per minute) and the route-config gate `config: { billing: { subscription, feature, minTier } }`
 * (402 SUBSCRIPTION_REQUIRED / 403 FEATURE_NOT_IN_PLAN / 403 PLAN_TIER_TOO_LOW), after the tenant guard.
 *
 * The webhook's wiring: each event's handler (stripe-events.ts) names its follow-up jobs, such as
 * `billing.event_effects` (emails, grace checks, resuming a tenant; jobs.ts); they are written to the
 * outbox in the event's transaction, and the outbox submits them (after commit, or by its sweep once
 * Redis is back). `onBillingEvent` runs after commit, on the request
 * path, and only invalidates the tenant's catalog entry and entitlements.
 */
import type { RouteOptions } from 'fastify'
import fp from 'fastify-plugin'
import type { AppOptions } from '../../core/config.js'
import { catalogChannel } from '../../core/tenancy/catalog.js'
import { seedPlansAtBoot } from './dev-seed.js'
import { createEntitlementsCache, type EntitlementsCache } from './entitlements.js'
import billingGuard from './guard.js'
import { documentTenantRateLimit, isTenantRoute } from './rate-limit-docs.js'
import { createStripeService, type StripeService } from './service.js'
import { createTenantRequestHook } from './tenant-requests.js'
import './events.js'
import type { BillingEvent, WebhookDeps } from './webhooks.js'

declare module 'fastify' {
  interface FastifyInstance {
    billing: StripeService
    /** What each tenant's plan allows (entitlements.ts), cached per process, invalidated across processes. */
    entitlements: EntitlementsCache
    /** After-commit hook of the Stripe webhook: drops cached copies of a tenant a processed billing event changed. */
    onBillingEvent: (e: BillingEvent) => Promise<void>
    /** Where the Stripe webhook writes its follow-up jobs: the outbox. */
    billingFollowUps: NonNullable<WebhookDeps['followUps']>
  }
}

export default fp<AppOptions>(
  async (fastify, { config }) => {
    // The host database was just migrated (host-db): in development, the plans follow config/plans.json.
    await seedPlansAtBoot(config, fastify.host.db, fastify.log)
    const entitlements = createEntitlementsCache({
      host: fastify.host,
      bus: fastify.services.invalidations,
      channel: `${config.redisPrefix}:entitlements`,
      catalogChannel: catalogChannel(config.redisPrefix),
      ttlS: config.pool.catalogTtlS,
      graceDays: config.billingGraceDays,
      logger: fastify.log,
    })
    await entitlements.ready
    fastify.addHook('onClose', () => entitlements.close())
    fastify.decorate('entitlements', entitlements)
    // Both change what the tenant's plan is: the catalog row (plan_tier) and its entitlements.
    const tenantChanged = async (tenantId: string) => {
      await Promise.all([fastify.services.catalog.invalidate(tenantId), entitlements.invalidate(tenantId)])
    }

    fastify.decorate(
      'billing',
      createStripeService({
        config,
        host: fastify.host,
        // change-plan, cancel and the checkout redirect write plan_tier outside the webhook: same invalidation as onBillingEvent.
        onTenantChanged: tenantChanged,
      }),
    )
    fastify.decorate('onBillingEvent', async (e: BillingEvent) => {
      // The event may have changed the tenant's plan tier in the catalog row: drop cached copies everywhere.
      // Not awaited: the local copy is dropped at once; the cross-process publish needs Redis, and a Redis outage
      // must not hold the webhook's answer (invalidate logs a failed publish; other processes catch up at TTL).
      if (e.tenantId) void tenantChanged(e.tenantId)
      const sub = e.subscription
      if (sub?.changed) {
        const { id, status, previousStatus, planKey, created } = sub
        await fastify.services.events.publish(sub.tenantId, 'subscription.changed', { subscription: { id, status, previousStatus, planKey, created } })
      }
    })
    fastify.decorate('billingFollowUps', { outbox: fastify.services.outbox })
    // Every tenant route, right after the tenant guard: API keys need api_access, requests per minute
    // from the plan (tenant-requests.ts). Added before the billing guard's hook, so it runs first.
    const tenantRequest = createTenantRequestHook(fastify, entitlements.get, entitlements.peek)
    fastify.addHook('onRoute', (route: RouteOptions) => {
      if (!isTenantRoute(route)) return
      route.preValidation = [route.preValidation ?? []].flat().concat(tenantRequest)
      documentTenantRateLimit(route)
    })
    await fastify.register(billingGuard, { host: fastify.host, graceDays: config.billingGraceDays, entitlements: entitlements.get })
  },
  { name: 'billing', dependencies: ['host-db', 'services', 'tenancy', 'rate-limit'] },
)
