/**
 * Job records: system jobs in the host DB's sys_jobs, tenant jobs in the tenant DB's
 * tenant_jobs. Both tables have the same columns, so one set of statements serves both.
 *
 * Lifecycle: pending → running → completed | failed; a failed attempt that will be retried goes back to
 * pending with retry_count + 1 and the error in error_log. So retry_count counts retries: never more
 * than max_retries, and once a job is finished (completed or failed) it equals BullMQ's attemptsMade − 1
 * (BullMQ counts every attempt, the last one included).
 *
 * Raw postgres.js statements (prepared once per connection); status changes go through the group-commit
 * writer (record-writer.ts), since every job makes at least two.
 */
import type { Sql } from '../db/connect.js'
import { createChangeWriter } from './record-writer.js'
import type { JobScope } from './registry.js'

export const JOB_STATUSES = ['pending', 'running', 'completed', 'failed'] as const
export type JobStatus = (typeof JOB_STATUSES)[number]

export interface JobRecord {
  id: string
  scope: JobScope
  /** The tenant the job works for (system jobs: when the payload names one). */
  tenantId: string | null
  jobType: string
  status: JobStatus
  payload: Record<string, unknown>
  result: unknown
  /** The error and stack of the last failed attempt. */
  errorLog: string | null
  retryCount: number
  maxRetries: number
  createdAt: Date
  startedAt: Date | null
  finishedAt: Date | null
  updatedAt: Date
}

export interface NewRecord {
  id: string
  jobType: string
  payload: unknown
  maxRetries: number
  tenantId: string | null
}

interface Row {
  id: string
  tenant_id?: string | null
  job_type: string
  status: JobStatus
  payload: Record<string, unknown>
  result: unknown
  error_log: string | null
  retry_count: number
  max_retries: number
  created_at: Date | string
  started_at: Date | string | null
  finished_at: Date | string | null
  updated_at: Date | string
}

export interface RecordStore {
  readonly scope: JobScope
  /** Insert new records; ids that already exist are left alone. Returns the ids actually inserted. */
  insert(sql: Sql, records: NewRecord[]): Promise<Set<string>>
  statuses(sql: Sql, ids: string[]): Promise<Map<string, JobStatus>>
  /**
   * Of these ids, the records a new submit of the same id must enqueue again: still pending (an earlier
   * submit may have died before reaching Redis), or failed at enqueue (ENQUEUE_FAILED, never started),
   * which turn pending again. A record that ran is left alone.
   */
  resubmittable(sql: Sql, ids: string[]): Promise<Set<string>>
  running(sql: Sql, id: string, retryCount: number): Promise<void>
  retrying(sql: Sql, id: string, retryCount: number, errorLog: string): Promise<void>
  completed(sql: Sql, id: string, retryCount: number, result: unknown): Promise<void>
  failed(sql: Sql, id: string, retryCount: number, errorLog: string): Promise<void>
  get(sql: Sql, id: string, tenantId?: string): Promise<JobRecord | undefined>
  /** Records still pending or running whose last change is older than `olderThanMs` (the reconcile sweep), oldest first. */
  stale(sql: Sql, olderThanMs: number, limit: number): Promise<StaleRecord[]>
  list(sql: Sql, filter: ListFilter, tenantId?: string): Promise<JobRecord[]>
}

export interface StaleRecord {
  id: string
  jobType: string
  status: 'pending' | 'running'
  payload: unknown
}

export interface ListFilter {
  type?: string | undefined
  status?: JobStatus | undefined
  limit: number
  /** Cursor: records created before this record id. */
  before?: string | undefined
  /** sys_jobs only: the jobs a system job recorded for this tenant. */
  tenantId?: string | undefined
  /** Created at or after / before this instant. */
  since?: Date | undefined
  until?: Date | undefined
}

/** error_log prefix of a record whose job never reached the queue (task-manager.ts): a later submit of its id enqueues it. */
export const ENQUEUE_FAILED = 'enqueue failed: '

// With fetch_types off, postgres.js may hand timestamptz back as text.
const date = (value: Date | string | null): Date | null => (value === null ? null : value instanceof Date ? value : new Date(value))

function toRecord(scope: JobScope, row: Row, tenantId: string | undefined): JobRecord {
  return {
    id: row.id,
    scope,
    tenantId: tenantId ?? row.tenant_id ?? null,
    jobType: row.job_type,
    status: row.status,
    payload: row.payload,
    result: row.result ?? null,
    errorLog: row.error_log,
    retryCount: row.retry_count,
    maxRetries: row.max_retries,
    createdAt: date(row.created_at)!,
    startedAt: date(row.started_at),
    finishedAt: date(row.finished_at),
    updatedAt: date(row.updated_at)!,
  }
}

function createStore(scope: JobScope): RecordStore {
  const table = scope === 'system' ? 'sys_jobs' : 'tenant_jobs'
  const hasTenant = scope === 'system'
  const change = createChangeWriter(table)
  return {
    scope,
    async insert(sql, records) {
      if (records.length === 0) return new Set()
      // One statement for any batch size: the rows travel as one JSON parameter.
      const rows = JSON.stringify(
        records.map((r) => ({ id: r.id, job_type: r.jobType, payload: r.payload, max_retries: r.maxRetries, tenant_id: r.tenantId })),
      )
      const inserted = hasTenant
        ? await sql<{ id: string }[]>`
            insert into sys_jobs (id, job_type, payload, max_retries, tenant_id)
            select id, job_type, payload, max_retries, tenant_id
            from jsonb_to_recordset(${rows}::jsonb) as r(id uuid, job_type text, payload jsonb, max_retries int, tenant_id uuid)
            on conflict (id) do nothing returning id`
        : await sql<{ id: string }[]>`
            insert into tenant_jobs (id, job_type, payload, max_retries)
            select id, job_type, payload, max_retries
            from jsonb_to_recordset(${rows}::jsonb) as r(id uuid, job_type text, payload jsonb, max_retries int)
            on conflict (id) do nothing returning id`
      return new Set(inserted.map((r) => r.id))
    },
    async statuses(sql, ids) {
      const rows = await sql<{ id: string; status: JobStatus }[]>`
        select id, status from ${sql(table)} where id in (select jsonb_array_elements_text(${JSON.stringify(ids)}::jsonb)::uuid)`
      return new Map(rows.map((r) => [r.id, r.status]))
    },
    async resubmittable(sql, ids) {
      // The plain select reads the snapshot from before the update, so a revived record is listed once.
      const rows = await sql<{ id: string }[]>`
        with ids as (select jsonb_array_elements_text(${JSON.stringify(ids)}::jsonb)::uuid as id),
        revived as (
          update ${sql(table)} as j set status = 'pending', updated_at = now()
          where j.id in (select id from ids) and j.status = 'failed' and j.started_at is null
            and starts_with(j.error_log, ${ENQUEUE_FAILED})
          returning j.id)
        select id from revived
        union all
        select j.id from ${sql(table)} as j where j.id in (select id from ids) and j.status = 'pending'`
      return new Set(rows.map((r) => r.id))
    },
    running: (sql, id, retryCount) => change(sql, { id, status: 'running', retry_count: retryCount }),
    retrying: (sql, id, retryCount, errorLog) => change(sql, { id, status: 'pending', retry_count: retryCount, error_log: errorLog }),
    completed: (sql, id, retryCount, result) =>
      // Serialised here, so a result that is not JSON fails its own job, not the whole batch.
      change(sql, { id, status: 'completed', retry_count: retryCount, result: result === undefined ? null : JSON.stringify(result) }),
    failed: (sql, id, retryCount, errorLog) => change(sql, { id, status: 'failed', retry_count: retryCount, error_log: errorLog }),
    async get(sql, id, tenantId) {
      const [row] = await sql<Row[]>`select * from ${sql(table)} where id = ${id}`
      return row ? toRecord(scope, row, tenantId) : undefined
    },
    async stale(sql, olderThanMs, limit) {
      // status = any(…) rides the (status, created_at) index: few rows are unfinished at any time.
      const rows = await sql<{ id: string; job_type: string; status: 'pending' | 'running'; payload: unknown }[]>`
        select id, job_type, status, payload from ${sql(table)}
        where status = any('{pending,running}'::text[])
          and updated_at < now() - make_interval(secs => ${olderThanMs / 1000})
        order by updated_at
        limit ${limit}`
      return rows.map((r) => ({ id: r.id, jobType: r.job_type, status: r.status, payload: r.payload }))
    },
    async list(sql, filter, tenantId) {
      const limit = Math.min(Math.max(1, Math.trunc(filter.limit)), 1000)
      const rows = await sql<Row[]>`
        select * from ${sql(table)}
        where true
          ${filter.type ? sql`and job_type = ${filter.type}` : sql``}
          ${filter.status ? sql`and status = ${filter.status}` : sql``}
          ${hasTenant && filter.tenantId ? sql`and tenant_id = ${filter.tenantId}` : sql``}
          ${filter.since ? sql`and created_at >= ${filter.since.toISOString()}::timestamptz` : sql``}
          ${filter.until ? sql`and created_at < ${filter.until.toISOString()}::timestamptz` : sql``}
          ${filter.before ? sql`and (created_at, id) < (select created_at, id from ${sql(table)} where id = ${filter.before})` : sql``}
        order by created_at desc, id desc
        limit ${limit}`
      return rows.map((row) => toRecord(scope, row, tenantId))
    },
  }
}

export const systemRecords = createStore('system')
export const tenantRecords = createStore('tenant')
export const recordsFor = (scope: JobScope) => (scope === 'system' ? systemRecords : tenantRecords)
