/**
 * Deleting a tenant stops its billing: the lifecycle step `cancelBilling` (first step of softDeleted and
 * hardDeleted, see tenancy/lifecycle.ts) cancels every subscription of the tenant that Stripe could still
 * charge.
 *
 * IMMEDIATELY, for soft and hard delete alike: a deleted tenant is out of reach, so billing to the end
 * of the period would charge for a service its customer can no longer use. A platform admin may restore
 * a soft-deleted tenant (lifecycle `restored`), but its billing is NOT restarted: the owner subscribes
 * again (or an operator comps a plan). Stripe's cancel doesn't prorate by default: refunds of the unused
 * part stay an operator's decision in the Stripe dashboard.
 *
 * Idempotent: a subscription already canceled (or unknown to Stripe) counts as done, and what Stripe
 * returns is applied to core_subscriptions, so a re-run finds nothing live and calls Stripe no more.
 * Transient Stripe failures throw: the step fails and the delete can be run again. Stripe's
 * customer.subscription.deleted webhook that follows agrees (or, after a hard delete, names a tenant that
 * no longer exists and is recorded `failed`, which is expected).
 */
import { and, eq, notInArray } from 'drizzle-orm'
import Stripe from 'stripe'
import { subscriptions } from '../../../drizzle/host/schema.js'
import type { Config } from '../../core/config.js'
import { type HostDatabase, hostDbOn } from '../../core/db/host.js'
import type { LifecycleStepContribution, Step } from '../../core/tenancy/lifecycle.js'
import { createStripe } from './stripe.js'
import { applySubscription, createPlanLookup, type PlanLookup, refreshTenantPlanTier, snapshotOf } from './subscriptions.js'

/** Every status in which Stripe may still charge (or retry a charge for) a subscription. */
const ENDED_STATUSES = ['canceled', 'incomplete_expired'] as const

export interface TenantBillingStop {
  /** Cancel the tenant's live subscriptions at once; resolves to the Stripe ids it canceled (or found canceled). */
  cancelSubscriptions(tenantId: string, opts?: { actorUserId?: string | undefined }): Promise<string[]>
}

export function createTenantBillingStop(deps: { host: HostDatabase; stripe: Stripe; plans?: PlanLookup }): TenantBillingStop {
  const { sql, db } = deps.host
  const plans = deps.plans ?? createPlanLookup()

  /** Cancel in Stripe; an already-canceled or unknown subscription is done. Returns Stripe's copy, if there still is one. */
  async function cancel(id: string): Promise<Stripe.Subscription | null> {
    try {
      return await deps.stripe.subscriptions.cancel(id)
    } catch (err) {
      if (!(err instanceof Stripe.errors.StripeInvalidRequestError)) throw err
      if (err.code === 'resource_missing') return null
      // Stripe refuses to cancel a subscription that already ended: its current copy says so.
      const current = await deps.stripe.subscriptions.retrieve(id)
      if ((ENDED_STATUSES as readonly string[]).includes(current.status)) return current
      throw err
    }
  }

  return {
    async cancelSubscriptions(tenantId, opts = {}) {
      const live = await db
        .select({ stripeSubscriptionId: subscriptions.stripeSubscriptionId, stripeUpdatedAt: subscriptions.stripeUpdatedAt })
        .from(subscriptions)
        .where(and(eq(subscriptions.tenantId, tenantId), notInArray(subscriptions.status, [...ENDED_STATUSES])))
      const done: string[] = []
      for (const row of live) {
        const sub = await cancel(row.stripeSubscriptionId)
        done.push(row.stripeSubscriptionId)
        if (!sub) {
          // Stripe has no such subscription: nothing can charge it any more.
          await sql.begin(async (tx) => {
            await hostDbOn(tx).update(subscriptions).set({ status: 'canceled' }).where(eq(subscriptions.stripeSubscriptionId, row.stripeSubscriptionId))
            await refreshTenantPlanTier(tx, tenantId)
          })
          continue
        }
        // As of the row's watermark, like the service's own changes: a webhook that moved it meanwhile wins.
        // (applySubscription takes the postgres.js transaction the webhooks open, see subscriptions.ts.)
        await sql.begin((tx) =>
          applySubscription(tx, {
            snapshot: snapshotOf(sub),
            at: Math.floor(row.stripeUpdatedAt.getTime() / 1000),
            source: 'fetched',
            tenantId,
            plans,
            audit: { reason: 'tenant deleted', actorUserId: opts.actorUserId ?? null },
          }),
        )
      }
      return done
    },
  }
}

/** The step's dependency from the config: undefined when billing is disabled (the step is then skipped). */
export function tenantBillingStopFor(host: HostDatabase, config: Partial<Pick<Config, 'stripe'>>): TenantBillingStop | undefined {
  return config.stripe ? createTenantBillingStop({ host, stripe: createStripe(config.stripe) }) : undefined
}

const stops = new WeakMap<object, TenantBillingStop | undefined>()

/**
 * The lifecycle step cancelBilling, first of softDeleted and hardDeleted, so a tenant is never marked
 * deleted (or dropped) while Stripe still charges it. Without billing configured it does nothing.
 */
const cancelBilling: Step = async (row, ctx, opts) => {
  // One Stripe client per host database and config (a process has one of each).
  if (!stops.has(ctx.config)) stops.set(ctx.config, tenantBillingStopFor(ctx.host, ctx.config))
  await stops.get(ctx.config)?.cancelSubscriptions(row.id, { actorUserId: opts.actorUserId })
  return undefined
}

export const cancelBillingSteps: LifecycleStepContribution[] = [
  { event: 'softDeleted', step: 'cancelBilling', before: 'markDeleted', run: cancelBilling },
  { event: 'hardDeleted', step: 'cancelBilling', before: 'evictPools', run: cancelBilling },
]
