/**
 * `jobs.trim_records`: system job records (sys_jobs) finished more than JOB_RECORD_RETENTION_DAYS ago,
 * with what only they needed: their at-most-once effect marks (sys_job_effects) and the outbox rows
 * already handed to the queue (or rejected). A record still pending or running is never deleted,
 * however old (the reconcile sweep owns it), nor the effects of such a job. BullMQ itself forgets
 * finished jobs after 1 and 7 days, so nothing can re-run a job whose effects are deleted here.
 *
 * Tenant job records live in each tenant's database (tenant_jobs): the run then submits one
 * `jobs.trim_tenant_records` per active tenant, a tenant job like any other (the tenant's own pool, its
 * concurrency cap), with ids derived from this run's, so a retried run submits the same jobs again.
 */
import type { Config } from '../config.js'
import type { HostDatabase } from '../db/host.js'
import { derivedJobId, type JobContext, systemJob, type TenantJobContext, tenantJob } from '../jobs/registry.js'
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
    const tenants = await fanOutToTenants(ctx)
    return { jobRecords, jobEffects, outbox, tenants }
  },
})

const FAN_OUT_PAGE = 500
const NO_ID = '00000000-0000-0000-0000-000000000000'

/**
 * One jobs.trim_tenant_records per active tenant, submitted one by one: submitting writes the job's
 * record in the tenant's database, and one tenant whose database is unreachable must not keep the
 * others' trims from being queued (it is logged and counted; the next night tries it again).
 */
async function fanOutToTenants(ctx: JobContext<JobRecordRetentionDeps>): Promise<{ submitted: number; failed: number }> {
  const { sql } = ctx.deps.host
  let after = NO_ID
  const counts = { submitted: 0, failed: 0 }
  for (;;) {
    const page = await sql<{ id: string }[]>`
      select id from core_tenants where status = 'active' and id > ${after}::uuid order by id limit ${FAN_OUT_PAGE}`
    for (const t of page) {
      try {
        await ctx.submit('jobs.trim_tenant_records', { tenantId: t.id }, { id: trimTenantJobId(ctx.jobId, t.id) })
        counts.submitted++
      } catch (err) {
        counts.failed++
        ctx.logger.warn({ err, tenantId: t.id }, "could not submit the tenant's job record trim")
      }
    }
    if (page.length < FAN_OUT_PAGE) return counts
    after = page[page.length - 1]!.id
  }
}

/** The id of the tenant trim a jobs.trim_records run submits for one tenant. */
export const trimTenantJobId = (parentJobId: string, tenantId: string) => derivedJobId(parentJobId, `tenant:${tenantId}`)

/** `jobs.trim_tenant_records`: the tenant's finished tenant_jobs past JOB_RECORD_RETENTION_DAYS (never pending or running). */
export const jobsTrimTenantRecords = tenantJob({
  payload: {},
  maxRetries: 3,
  async process(ctx: TenantJobContext<JobRecordRetentionDeps>) {
    const sql = ctx.db.$client
    const cutoff = await retentionCutoff(sql, ctx.deps.config.retention.jobRecordDays)
    const jobRecords = await deleteWhere(
      sql,
      'tenant_jobs',
      sql`status in ('completed', 'failed') and coalesce(finished_at, updated_at) < ${cutoff}::timestamptz`,
    )
    return { jobRecords }
  },
})
