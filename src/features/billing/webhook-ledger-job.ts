/**
 * `billing.trim_webhook_ledger` (nightly, README "Scheduled work"): deletes Stripe webhook ledger rows
 * received more than STRIPE_WEBHOOK_RETENTION_DAYS ago whose processing is final (processed or skipped).
 * A 'failed' row is kept whatever its age: a redelivery would process it again, and it is what an
 * operator looks at. The retention must outlast Stripe's redeliveries (3 days; the setting's minimum is
 * 7), or a redelivered event would find no ledger row and apply again. Idempotent: a plain delete by date.
 */
import { Type } from 'typebox'
import type { Config } from '../../core/config.js'
import type { HostDatabase } from '../../core/db/host.js'
import { deleteWhere, retentionCutoff } from '../../core/housekeeping/batched-delete.js'
import { type JobContext, systemJob } from '../../core/jobs/registry.js'

export interface LedgerRetentionDeps {
  host: HostDatabase
  config: Pick<Config, 'retention'>
}

export const billingTrimWebhookLedger = systemJob({
  payload: Type.Object({}, { additionalProperties: false }),
  maxRetries: 3,
  async process(ctx: JobContext<LedgerRetentionDeps>) {
    const { sql } = ctx.deps.host
    const cutoff = await retentionCutoff(sql, ctx.deps.config.retention.stripeWebhookDays)
    const deleted = await deleteWhere(
      sql,
      'core_stripe_webhook_events',
      sql`status in ('processed', 'skipped') and received_at < ${cutoff}::timestamptz`,
    )
    return { deleted }
  },
})
