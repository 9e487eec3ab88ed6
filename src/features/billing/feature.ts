/** Billing with Stripe: plans, checkout, portal, the webhook, suspension for unpaid tenants. */
import { defineFeature } from '../../core/feature.js'
import { BILLING_ERROR_CODES } from './error-codes.js'
import { schedule } from '../../core/jobs/schedules.js'
import { BILLING_JOBS } from './jobs.js'
import billingPlugin from './plugin.js'
import { BILLING_SCHEDULED_JOBS } from './reconcile-job.js'
import publicBillingRoutes from './routes/billing.js'
import entitlementsRoutes from './routes/entitlements.js'
import stripeWebhookRoutes from './routes/stripe-webhook.js'
import tenantBillingRoutes from './routes/tenant-billing.js'
import { cancelBillingSteps } from './tenant-deletion.js'

export default defineFeature({
  name: 'billing',
  errors: BILLING_ERROR_CODES,
  plugins: [billingPlugin],
  routes: [
    { scope: 'tenant', prefix: '/billing', plugin: tenantBillingRoutes },
    { scope: 'tenant', prefix: '/billing', plugin: entitlementsRoutes },
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
  jobs: { ...BILLING_JOBS, ...BILLING_SCHEDULED_JOBS },
  schedules: [
    schedule({
      name: 'billing.trim_webhook_ledger',
      cron: '40 3 * * *',
      job: 'billing.trim_webhook_ledger',
      payload: {},
      description:
        'Deletes Stripe webhook ledger rows received more than `STRIPE_WEBHOOK_RETENTION_DAYS` (90) ago and processed or skipped; failed ones stay',
    }),
    schedule({
      name: 'billing.reconcile_subscriptions',
      cron: '0 4 * * *',
      job: 'billing.reconcile_subscriptions',
      payload: {},
      description:
        "Retrieves every subscription Stripe may still change and applies Stripe's copy when a webhook was missed; skipped without `STRIPE_SECRET_KEY`",
    }),
  ],
  lifecycle: cancelBillingSteps,
})
