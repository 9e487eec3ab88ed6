/**
 * Billing for the app: `fastify.billing` (the Stripe service; every call answers 503 BILLING_DISABLED
 * without STRIPE_SECRET_KEY) and the route-config gate `config: { billing: { subscription, feature } }`
 * (402 SUBSCRIPTION_REQUIRED / 403 FEATURE_NOT_IN_PLAN), which runs after the tenant guard.
 */
import fp from 'fastify-plugin'
import type { AppOptions } from '../../app.js'
import billingGuard from '../../billing/guard.js'
import { createStripeService, type StripeService } from '../../billing/service.js'
import type { BillingEvent } from '../../billing/webhooks.js'

declare module 'fastify' {
  interface FastifyInstance {
    billing: StripeService
    /** After-commit hook of the Stripe webhook: side effects of a processed billing event. */
    onBillingEvent: (e: BillingEvent) => Promise<void>
  }
}

export default fp<AppOptions>(
  async (fastify, { config }) => {
    fastify.decorate('billing', createStripeService({ config, host: fastify.host }))
    fastify.decorate('onBillingEvent', async (e: BillingEvent) => {
      // The event may have changed the tenant's plan tier in the catalog row: drop cached copies everywhere.
      if (e.tenantId) await fastify.services.catalog.invalidate(e.tenantId)
    })
    await fastify.register(billingGuard, { host: fastify.host, graceDays: config.billingGraceDays })
  },
  { name: 'billing', dependencies: ['host-db', 'services', 'tenancy'] },
)
