/**
 * `inbound-webhooks.trim_ledger` (nightly, README "Scheduled work"): deletes processed ledger rows
 * received more than WEBHOOK_RETENTION_DAYS ago. Rows still `received` or `failed` stay whatever their
 * age (work owed, or what an operator looks at). The retention must outlast the providers' redeliveries
 * (GitHub redelivers by hand only; most providers retry for up to 3 days), or a late redelivery would
 * find no row and be processed again. Idempotent: a plain delete by date.
 */
import { Type } from 'typebox'
import type { Config } from '../../core/config.js'
import type { HostDatabase } from '../../core/db/host.js'
import { deleteWhere, retentionCutoff } from '../../core/housekeeping/batched-delete.js'
import { type JobContext, systemJob } from '../../core/jobs/registry.js'

export const inboundTrimLedger = systemJob({
  payload: Type.Object({}, { additionalProperties: false }),
  maxRetries: 3,
  async process(ctx: JobContext<{ host: HostDatabase; config: Pick<Config, 'webhooks'> }>) {
    const { sql } = ctx.deps.host
    const cutoff = await retentionCutoff(sql, ctx.deps.config.webhooks.retentionDays)
    const deleted = await deleteWhere(sql, 'core_inbound_webhook_events', sql`status = 'processed' and received_at < ${cutoff}::timestamptz`)
    return { deleted }
  },
})
