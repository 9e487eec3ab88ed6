/**
 * Billing for the app: `fastify.billing` (the Stripe service; every call answers 503 BILLING_DISABLED
 * without STRIPE_SECRET_KEY) and the route-config gate `config: { billing: { subscription, feature } }`
 * (402 SUBSCRIPTION_REQUIRED / 403 FEATURE_NOT_IN_PLAN), which runs after the tenant guard.
 *
 * `onBillingEvent` runs after a webhook's transaction committed, on the request path: it only
 * invalidates the catalog entry and enqueues `billing.event_effects` (emails, grace checks, resuming a
 * tenant; jobs/billing-jobs.ts). If the queue is down the webhook still answers 200 (the change is
 * committed) and the failure is logged.
 */
import fp from 'fastify-plugin'
import type { AppOptions } from '../../app.js'
import billingGuard from '../../billing/guard.js'
import { createStripeService, type StripeService } from '../../billing/service.js'
import type { BillingEvent } from '../../billing/webhooks.js'
import { billingEffectsFor, effectsJobId } from '../../jobs/billing-jobs.js'

declare module 'fastify' {
  interface FastifyInstance {
    billing: StripeService
    /** After-commit hook of the Stripe webhook: side effects of a processed billing event. */
    onBillingEvent: (e: BillingEvent) => Promise<void>
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
      if (e.tenantId) await fastify.services.catalog.invalidate(e.tenantId)
      const effects = billingEffectsFor(e)
      if (effects) await fastify.services.tasks.submit('billing.event_effects', effects, { id: effectsJobId(e.eventId) })
    })
    await fastify.register(billingGuard, { host: fastify.host, graceDays: config.billingGraceDays })
  },
  { name: 'billing', dependencies: ['host-db', 'services', 'tenancy'] },
)
