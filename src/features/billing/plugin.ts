/**
 * Billing for the app: `fastify.billing` (the Stripe service; every call answers 503 BILLING_DISABLED
 * without STRIPE_SECRET_KEY) and the route-config gate `config: { billing: { subscription, feature } }`
 * (402 SUBSCRIPTION_REQUIRED / 403 FEATURE_NOT_IN_PLAN), which runs after the tenant guard.
 *
 * The webhook's wiring: each event's handler (stripe-events.ts) names its follow-up jobs, such as
 * `billing.event_effects` (emails, grace checks, resuming a tenant; jobs.ts); they are written to the
 * outbox in the event's transaction, and the outbox submits them (after commit, or by its sweep once
 * Redis is back). `onBillingEvent` runs after commit, on the request
 * path, and only invalidates the tenant's catalog entry.
 */
import fp from 'fastify-plugin'
import type { AppOptions } from '../../core/config.js'
import billingGuard from './guard.js'
import { createStripeService, type StripeService } from './service.js'
import type { BillingEvent, WebhookDeps } from './webhooks.js'

declare module 'fastify' {
  interface FastifyInstance {
    billing: StripeService
    /** After-commit hook of the Stripe webhook: drops cached copies of a tenant a processed billing event changed. */
    onBillingEvent: (e: BillingEvent) => Promise<void>
    /** Where the Stripe webhook writes its follow-up jobs: the outbox. */
    billingFollowUps: NonNullable<WebhookDeps['followUps']>
  }
}

export default fp<AppOptions>(
  async (fastify, { config }) => {
    fastify.decorate(
      'billing',
      createStripeService({
        config,
        host: fastify.host,
        // change-plan, cancel and the checkout redirect write plan_tier outside the webhook: same invalidation as onBillingEvent.
        onTenantChanged: (tenantId) => fastify.services.catalog.invalidate(tenantId),
      }),
    )
    fastify.decorate('onBillingEvent', async (e: BillingEvent) => {
      // The event may have changed the tenant's plan tier in the catalog row: drop cached copies everywhere.
      // Not awaited: the local copy is dropped at once; the cross-process publish needs Redis, and a Redis outage
      // must not hold the webhook's answer (invalidate logs a failed publish; other processes catch up at TTL).
      if (e.tenantId) void fastify.services.catalog.invalidate(e.tenantId)
    })
    fastify.decorate('billingFollowUps', { outbox: fastify.services.outbox })
    await fastify.register(billingGuard, { host: fastify.host, graceDays: config.billingGraceDays })
  },
  { name: 'billing', dependencies: ['host-db', 'services', 'tenancy'] },
)
