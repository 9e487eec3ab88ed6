/** Billing with Stripe: plans, checkout, portal, the webhook, suspension for unpaid tenants. */
import { defineFeature } from '../../core/feature.js'
import { BILLING_ERROR_CODES } from './error-codes.js'
import { BILLING_JOBS } from './jobs.js'
import billingPlugin from './plugin.js'
import publicBillingRoutes from './routes/billing.js'
import stripeWebhookRoutes from './routes/stripe-webhook.js'
import tenantBillingRoutes from './routes/tenant-billing.js'
import { cancelBillingSteps } from './tenant-deletion.js'

export default defineFeature({
  name: 'billing',
  errors: BILLING_ERROR_CODES,
  plugins: [billingPlugin],
  routes: [
    { scope: 'tenant', prefix: '/billing', plugin: tenantBillingRoutes },
    { scope: 'root', prefix: '/billing', plugin: publicBillingRoutes, options: (fastify) => ({ host: fastify.host }) },
    {
      scope: 'root',
      prefix: '/webhooks',
      plugin: stripeWebhookRoutes,
      options: (fastify, { config }) => ({
        config,
        host: fastify.host,
        onBillingEvent: fastify.onBillingEvent,
        followUps: fastify.billingFollowUps,
      }),
    },
  ],
  jobs: BILLING_JOBS,
  lifecycle: cancelBillingSteps,
})
