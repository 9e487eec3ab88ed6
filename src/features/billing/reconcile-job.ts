/**
 * `billing.reconcile_subscriptions` (nightly, README "Scheduled work"): finds what missed webhooks left
 * behind. Every subscription row Stripe may still change (any status but canceled and
 * incomplete_expired, so live ones and those stuck incomplete or unpaid) is retrieved from Stripe and
 * applied through applySubscription, the one place subscription state lands, as a fetched copy dated
 * by the row's watermark read before the call: applied when the row has not moved meanwhile, and
 * skipped ('stale') when a webhook moved it during the call (the webhook's state is newer). A copy equal
 * to the row changes nothing (no audit row), so a second run is a no-op.
 *
 * One subscription failing (Stripe down, a row Stripe does not know) doesn't stop the rest; transient
 * failures then fail the job, which retries later and re-checks everything (idempotent). Skipped
 * without STRIPE_SECRET_KEY.
 */
import { and, asc, gt, notInArray } from 'drizzle-orm'
import type Stripe from 'stripe'
import { Type } from 'typebox'
import { subscriptions } from '../../../drizzle/host/schema.js'
import type { Config } from '../../core/config.js'
import type { HostDatabase } from '../../core/db/host.js'
import { type JobContext, type Jobs, systemJob } from '../../core/jobs/registry.js'
import type { Catalog } from '../../core/tenancy/types.js'
import { createStripe, isTransientStripeError, Stripe as StripeSdk } from './stripe.js'
import { applySubscription, createPlanLookup, snapshotOf } from './subscriptions.js'
import { billingTrimWebhookLedger } from './webhook-ledger-job.js'

/** Statuses after which Stripe never changes a subscription again: nothing to reconcile. */
const FINAL_STATUSES = ['canceled', 'incomplete_expired'] as const
const PAGE = 100
const NO_ID = '00000000-0000-0000-0000-000000000000'

export interface ReconcileDeps {
  host: HostDatabase
  config: Pick<Config, 'stripe'>
  /** Drops cached catalog copies of a tenant whose plan tier may have changed. */
  catalog?: Pick<Catalog, 'invalidate'>
  /** Tests hand in a client (otherwise built from config.stripe). */
  stripe?: Stripe
}

export interface ReconcileCounts {
  checked: number
  /** Stripe's copy differed and was applied. */
  updated: number
  unchanged: number
  /** A webhook moved the row while Stripe was asked: its newer state stays. */
  movedMeanwhile: number
  /** Stripe does not know the subscription (another account or mode?): logged, left alone. */
  unknownToStripe: number
  /** Stripe unavailable for it: the job fails after the rest and retries. */
  failed: number
}

export const billingReconcileSubscriptions = systemJob({
  payload: Type.Object({}, { additionalProperties: false }),
  maxRetries: 3,
  backoff: { type: 'exponential', delayMs: 10 * 60_000 },
  async process(ctx: JobContext<ReconcileDeps>): Promise<ReconcileCounts | { skipped: string }> {
    const { host, config, catalog } = ctx.deps
    if (!config?.stripe) return { skipped: 'billing is not configured (STRIPE_SECRET_KEY unset)' }
    const stripe = ctx.deps.stripe ?? createStripe(config.stripe)
    const plans = createPlanLookup()
    const counts: ReconcileCounts = { checked: 0, updated: 0, unchanged: 0, movedMeanwhile: 0, unknownToStripe: 0, failed: 0 }
    let after = NO_ID
    for (;;) {
      const rows = await host.db
        .select({ id: subscriptions.id, stripeSubscriptionId: subscriptions.stripeSubscriptionId, stripeUpdatedAt: subscriptions.stripeUpdatedAt })
        .from(subscriptions)
        .where(and(notInArray(subscriptions.status, [...FINAL_STATUSES]), gt(subscriptions.id, after)))
        .orderBy(asc(subscriptions.id))
        .limit(PAGE)
      for (const row of rows) {
        counts.checked++
        let sub: Stripe.Subscription
        try {
          sub = await stripe.subscriptions.retrieve(row.stripeSubscriptionId)
        } catch (err) {
          if (err instanceof StripeSdk.errors.StripeError && !isTransientStripeError(err)) {
            counts.unknownToStripe++
            ctx.logger.warn({ err, subscription: row.stripeSubscriptionId }, 'reconcile: Stripe could not return the subscription')
          } else {
            counts.failed++
            ctx.logger.warn({ err, subscription: row.stripeSubscriptionId }, 'reconcile: retrieving the subscription failed')
          }
          continue
        }
        const at = Math.floor(row.stripeUpdatedAt.getTime() / 1000)
        const outcome = await host.sql.begin((tx) =>
          applySubscription(tx, {
            snapshot: snapshotOf(sub),
            at,
            source: 'fetched',
            plans,
            audit: { reason: 'nightly reconcile with Stripe (billing.reconcile_subscriptions)' },
          }),
        )
        if (outcome.kind === 'applied' && outcome.subscription.changed) {
          counts.updated++
          ctx.logger.info(
            {
              subscription: row.stripeSubscriptionId,
              status: outcome.subscription.status,
              previous: outcome.subscription.previousStatus,
            },
            'reconcile: applied a change a webhook had not delivered',
          )
          await catalog?.invalidate(outcome.subscription.tenantId).catch(() => {})
        } else if (outcome.kind === 'applied') counts.unchanged++
        else counts.movedMeanwhile++
      }
      if (rows.length < PAGE) break
      after = rows[rows.length - 1]!.id
    }
    if (counts.failed > 0)
      throw new Error(`reconcile: ${counts.failed} of ${counts.checked} subscriptions could not be retrieved from Stripe`)
    return counts
  },
})

/** Billing's scheduled jobs (its manifest lists when they run). */
export const BILLING_SCHEDULED_JOBS = {
  'billing.reconcile_subscriptions': billingReconcileSubscriptions,
  'billing.trim_webhook_ledger': billingTrimWebhookLedger,
}

declare module '../../core/jobs/registry.js' {
  interface JobTypes extends Jobs<typeof BILLING_SCHEDULED_JOBS> {}
}
