/**
 * The core's scheduled housekeeping: its jobs and CORE_SCHEDULES, the core's part of the one list of
 * scheduled work (features add theirs in their manifests' `schedules`; README "Scheduled work").
 * Times are UTC and spread out, so the nightly jobs don't all hit the host database at once.
 */
import type { Jobs } from '../jobs/registry.js'
import { schedule } from '../jobs/schedules.js'
import { identityPurgeExpired } from './expired-credentials.js'
import { jobsTrimRecords, jobsTrimTenantRecords } from './job-records.js'
import { tenantsPurgeDeleted } from './tenant-retention.js'

export const HOUSEKEEPING_JOBS = {
  'tenants.purge_deleted': tenantsPurgeDeleted,
  'identity.purge_expired': identityPurgeExpired,
  'jobs.trim_records': jobsTrimRecords,
  'jobs.trim_tenant_records': jobsTrimTenantRecords,
}

declare module '../jobs/registry.js' {
  interface JobTypes extends Jobs<typeof HOUSEKEEPING_JOBS> {}
}

export const CORE_SCHEDULES = [
  schedule({
    name: 'identity.purge_expired',
    cron: '10 3 * * *',
    job: 'identity.purge_expired',
    payload: {},
    description:
      'Deletes user tokens expired or used, API keys expired or revoked, invitations expired or revoked and ownership offers expired or canceled, `CREDENTIAL_RETENTION_DAYS` (30) after that',
  }),
  schedule({
    name: 'jobs.trim_records',
    cron: '20 3 * * *',
    job: 'jobs.trim_records',
    payload: {},
    description:
      'Deletes system job records finished more than `JOB_RECORD_RETENTION_DAYS` (30) ago, their effect marks and dispatched outbox rows, then submits `jobs.trim_tenant_records` per active tenant for its `tenant_jobs`; never a pending or running job',
  }),
  schedule({
    name: 'tenants.purge_deleted',
    cron: '30 3 * * *',
    job: 'tenants.purge_deleted',
    payload: {},
    description:
      'Hard-deletes (lifecycle `hardDeleted`: database dropped) tenants soft-deleted more than `TENANT_RETENTION_DAYS` (30) ago, one at a time',
  }),
]
