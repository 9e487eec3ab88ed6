/**
 * `jobs.trim_records`: system job records (sys_jobs) finished more than JOB_RECORD_RETENTION_DAYS ago,
 * with what only they needed: their at-most-once effect marks (sys_job_effects) and the outbox rows
 * already handed to the queue (or rejected). A record still pending or running is never deleted,
 * however old (the reconcile sweep owns it), nor the effects of such a job. BullMQ itself forgets
 * finished jobs after 1 and 7 days, so nothing can re-run a job whose effects are deleted here.
 * Tenant job records (tenant_jobs, one table per tenant database) are not trimmed yet.
 */
import type { Config } from '../config.js'
import type { HostDatabase } from '../db/host.js'
import { type JobContext, systemJob } from '../jobs/registry.js'
import { deleteInBatches, deleteWhere, retentionCutoff } from './batched-delete.js'
import { NoPayload } from './tenant-retention.js'

export interface JobRecordRetentionDeps {
  host: HostDatabase
  config: Pick<Config, 'retention'>
}

export const jobsTrimRecords = systemJob({
  payload: NoPayload,
  maxRetries: 3,
  async process(ctx: JobContext<JobRecordRetentionDeps>) {
    const { sql } = ctx.deps.host
    const cutoff = await retentionCutoff(sql, ctx.deps.config.retention.jobRecordDays)
    const jobRecords = await deleteWhere(
      sql,
      'sys_jobs',
      sql`status in ('completed', 'failed') and coalesce(finished_at, updated_at) < ${cutoff}::timestamptz`,
    )
    const jobEffects = await deleteInBatches(async (limit) => {
      const rows = await sql`
        delete from sys_job_effects e using (
          select job_id, effect from sys_job_effects x
          where x.updated_at < ${cutoff}::timestamptz
            and not exists (select 1 from sys_jobs j where j.id = x.job_id and j.status in ('pending', 'running'))
          limit ${limit}
        ) old
        where e.job_id = old.job_id and e.effect = old.effect
        returning 1 as deleted`
      return rows.length
    })
    const outbox = await deleteWhere(
      sql,
      'core_outbox',
      sql`dispatched_at < ${cutoff}::timestamptz or rejected_at < ${cutoff}::timestamptz`,
    )
    return { jobRecords, jobEffects, outbox }
  },
})
