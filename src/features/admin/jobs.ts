/**
 * `admin.tenants.bulk`: suspend or resume many tenants (POST /admin/api/tenants/bulk-suspend|bulk-resume),
 * each through the lifecycle like a single suspend, so each tenant gets its own audit entry naming the
 * admin, ip and user agent of the request that asked. Tenants are named by id, or selected by a filter
 * (the list's), narrowed to the statuses the event starts from and resolved when the job runs.
 *
 * Progress lives in the job record (sys_jobs.result, GET /admin/api/jobs/:id): `{total, done, …}`
 * rewritten every PROGRESS_EVERY tenants while running, the final counts when completed. A retried job walks
 * the list again: tenants it already moved are 'already_done', so nothing happens twice.
 */
import { type Static, Type } from 'typebox'
import type { HostDatabase } from '../../core/db/host.js'
import { type JobContext, type Jobs, systemJob } from '../../core/jobs/registry.js'
import { AppError } from '../../core/lib/errors.js'
import { Text, Uuid } from '../../core/lib/schemas.js'
import type { Provisioner } from '../../core/tenancy/provisioning.js'
import { MIGRATION_STATUSES, TENANT_STATUSES, tenantFilterSql, tenantIdsPage } from './api/tenant-queries.js'
import { and, count, inArray } from 'drizzle-orm'
import { tenants } from '../../../drizzle/host/schema.js'

/** One of these strings (a union of literals, an `enum` in OpenAPI). */
export const literals = <T extends string>(values: readonly T[]) => Type.Unsafe<T>(Type.Union(values.map((v) => Type.Literal(v))))

export const TenantStatusSchema = literals(TENANT_STATUSES)
export const MigrationStatusSchema = literals(MIGRATION_STATUSES)

export const TenantFilterSchema = Type.Object(
  {
    q: Type.Optional(Text({ minLength: 1, maxLength: 200, description: 'Part of the slug, the name or an owner’s email' })),
    status: Type.Optional(TenantStatusSchema),
    planTier: Type.Optional(Text({ minLength: 1, maxLength: 100 })),
    migrationStatus: Type.Optional(MigrationStatusSchema),
  },
  { additionalProperties: false },
)

export const BULK_EVENTS = ['suspended', 'resumed'] as const
export type BulkEvent = (typeof BULK_EVENTS)[number]
/** Ids per bulk request; a filter has no limit. */
export const MAX_BULK_IDS = 10_000

const BulkPayload = Type.Object(
  {
    event: literals(BULK_EVENTS),
    ids: Type.Optional(Type.Array(Uuid, { minItems: 1, maxItems: MAX_BULK_IDS })),
    filter: Type.Optional(TenantFilterSchema),
    actorUserId: Uuid,
    origin: Type.Object({ ip: Type.Optional(Type.String()), userAgent: Type.Optional(Type.String()) }, { additionalProperties: false }),
  },
  { additionalProperties: false },
)
export type BulkPayload = Static<typeof BulkPayload>

export interface BulkProgress {
  event: BulkEvent
  total: number
  done: number
  /** Moved by this job. */
  changed: number
  /** Already in the event's end state. */
  alreadyDone: number
  /** Not in a status the event starts from (e.g. deleted), or gone. */
  skipped: number
  failed: number
  /** The first failures and skips, with the error code. */
  problems: { tenantId: string; code: string }[]
}

export interface AdminJobDeps {
  host: HostDatabase
  provisioner: Pick<Provisioner, 'run'>
}

const PAGE = 200
const CONCURRENCY = 4
const PROGRESS_EVERY = 50
const MAX_PROBLEMS = 100
/** Where the event starts from: what a filter is narrowed to. */
const FROM: Record<BulkEvent, readonly string[]> = { suspended: ['active'], resumed: ['suspended'] }

export const tenantsBulk = systemJob({
  payload: BulkPayload,
  maxRetries: 2,
  async process(ctx: JobContext<AdminJobDeps>, p) {
    const { host, provisioner } = ctx.deps
    const db = host.db
    const where = p.filter ? and(tenantFilterSql(p.filter), inArray(tenants.status, FROM[p.event] as never[])) : undefined
    const total = p.ids ? p.ids.length : ((await db.select({ n: count() }).from(tenants).where(where))[0]?.n ?? 0)
    const progress: BulkProgress = { event: p.event, total, done: 0, changed: 0, alreadyDone: 0, skipped: 0, failed: 0, problems: [] }
    const runOne = async (tenantId: string) => {
      try {
        const outcome = await provisioner.run(p.event, tenantId, { actorUserId: p.actorUserId, origin: p.origin })
        if (outcome === 'done') progress.changed++
        else progress.alreadyDone++
      } catch (err) {
        const code = err instanceof AppError ? err.code : 'ERROR'
        if (code === 'INVALID_TRANSITION' || code === 'TENANT_NOT_FOUND') progress.skipped++
        else progress.failed++
        if (progress.problems.length < MAX_PROBLEMS) progress.problems.push({ tenantId, code })
        if (code === 'ERROR') ctx.logger.warn({ tenantId, err }, 'bulk tenant lifecycle run failed')
      }
      progress.done++
      if (progress.done % PROGRESS_EVERY === 0) await writeProgress(ctx, host, progress)
    }

    const pages = p.ids ? chunks(p.ids, PAGE) : walk(db, where)
    for await (const ids of pages) {
      for (const slice of chunks(ids, CONCURRENCY)) await Promise.all(slice.map(runOne))
    }
    return progress
  },
})

async function writeProgress(ctx: JobContext<AdminJobDeps>, host: HostDatabase, progress: BulkProgress) {
  await host.sql`update sys_jobs set result = ${JSON.stringify(progress)}::jsonb, updated_at = now()
    where id = ${ctx.jobId} and status in ('pending', 'running')`
  await ctx.job.updateProgress({ total: progress.total, done: progress.done })
}

async function* walk(db: HostDatabase['db'], where: ReturnType<typeof tenantFilterSql>) {
  let after: string | undefined
  for (;;) {
    const ids = await tenantIdsPage(db, where, after, PAGE)
    if (!ids.length) return
    yield ids
    after = ids.at(-1)
  }
}

function* chunks<T>(items: readonly T[], size: number): Generator<T[]> {
  for (let i = 0; i < items.length; i += size) yield items.slice(i, i + size)
}

export const ADMIN_JOBS = { 'admin.tenants.bulk': tenantsBulk }

declare module '../../core/jobs/registry.js' {
  interface JobTypes extends Jobs<typeof ADMIN_JOBS> {}
}
