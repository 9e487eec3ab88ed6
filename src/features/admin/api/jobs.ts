/**
 * /admin/api/jobs — background jobs, for platform admins (guard.ts).
 *
 *   GET /            job records, newest first: the system queue's (sys_jobs, optionally those recorded for one
 *                    tenant) or one tenant's (its tenant_jobs: the tenant queue's records live in each tenant's
 *                    database), filtered by state, type and time range, cursor paged; and every tenant's failed
 *                    jobs at once from BullMQ's failed set (queue=tenant&state=failed without tenantId).
 *   GET /:id         a system job's record and queue state: how a bulk action's progress is followed.
 *   POST /retry      retry failed jobs, by ids or by a filter, with BullMQ's own job.retry(): the job goes back
 *                    to waiting with its attempts reset (a manual retry gets the job's full retries again), and
 *                    its record turns running, then completed or failed, as the worker runs it. A filter walks
 *                    BullMQ's failed set (every tenant's, for the tenant queue; failed jobs stay there
 *                    7 days), at most MAX_RETRY jobs per request. Audited with the admin, ip and user agent.
 * Bull Board (/admin/queues) stays the place to look at the queues themselves.
 */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { type Job, Job as BullJob } from 'bullmq'
import { Type } from 'typebox'
import { JOB_STATUSES } from '../../../core/jobs/records.js'
import { audit } from '../../../core/lib/audit.js'
import { iso } from '../../../core/lib/dates.js'
import { badRequest } from '../../../core/lib/errors.js'
import { errorResponses, IdParams, Text, Uuid } from '../../../core/lib/schemas.js'
import { literals } from '../jobs.js'
import { Cursor, DateTime, DateTimeOrNull, Limit, page, StringOrNull, tags } from './schemas.js'

const QueueName = literals(['system', 'tenant'] as const)
const JobState = literals(JOB_STATUSES)
const JobType = Text({ minLength: 1, maxLength: 200, description: 'A job type, e.g. email.send' })

/** Jobs one retry request may move (a filter matching more leaves the rest for another request). */
export const MAX_RETRY = 10_000
const FAILED_PAGE = 500
/** Failed jobs one page of the every-tenant listing may scan. */
const MAX_SCAN = 10_000
const MAX_SKIPPED_LISTED = 100

const JobSummary = Type.Object({
  id: Uuid,
  queue: QueueName,
  tenantId: Type.Union([Uuid, Type.Null()]),
  jobType: Type.String(),
  status: JobState,
  errorLog: StringOrNull,
  retryCount: Type.Integer(),
  maxRetries: Type.Integer(),
  createdAt: DateTime,
  startedAt: DateTimeOrNull,
  finishedAt: DateTimeOrNull,
})

const ListQuery = Type.Object(
  {
    queue: Type.Optional(QueueName),
    state: Type.Optional(JobState),
    type: Type.Optional(JobType),
    tenantId: Type.Optional(Uuid),
    since: Type.Optional(DateTime),
    until: Type.Optional(DateTime),
    limit: Limit,
    cursor: Type.Optional(Cursor),
  },
  {
    additionalProperties: false,
    description: 'queue=tenant: one tenant’s records (tenantId), or every tenant’s failed jobs (state=failed, from the queue; the cursor is a job id)',
  },
)

const RetryFilter = Type.Object(
  {
    type: Type.Optional(JobType),
    tenantId: Type.Optional(Uuid),
    since: Type.Optional({ ...DateTime, description: 'Created at or after' }),
    until: Type.Optional({ ...DateTime, description: 'Created before' }),
  },
  { additionalProperties: false },
)
const RetryBody = Type.Object(
  {
    queue: QueueName,
    ids: Type.Optional(Type.Array(Uuid, { minItems: 1, maxItems: 1000, uniqueItems: true })),
    filter: Type.Optional(RetryFilter),
  },
  { additionalProperties: false, description: 'Exactly one of ids and filter ({} = every failed job of the queue)' },
)
const RetryResult = Type.Object({
  matched: Type.Integer({ description: 'Jobs named (ids) or failed jobs the filter matched' }),
  retried: Type.Integer(),
  retriedIds: Type.Array(Uuid, { description: 'The first 1000 retried' }),
  skipped: Type.Array(
    Type.Object({ id: Type.String(), reason: literals(['not_found', 'not_failed'] as const) }),
    { description: 'Named jobs that were not retried (the first 100): gone from the queue, or not failed' },
  ),
  truncated: Type.Boolean({ description: `More than ${MAX_RETRY} failed jobs matched: retry again for the rest` }),
})

const SystemJob = Type.Object({
  id: Uuid,
  jobType: Type.String(),
  status: Type.Union([Type.Literal('pending'), Type.Literal('running'), Type.Literal('completed'), Type.Literal('failed')]),
  result: Type.Unknown({ description: 'Progress while running (bulk jobs: {total, done, …}), the outcome once completed' }),
  errorLog: StringOrNull,
  retryCount: Type.Integer(),
  createdAt: DateTime,
  startedAt: DateTimeOrNull,
  finishedAt: DateTimeOrNull,
  queueState: Type.String(),
})

const timeRange = (since: string | undefined, until: string | undefined) => {
  const range = { since: since ? new Date(since) : undefined, until: until ? new Date(until) : undefined }
  if (range.since && range.until && range.since >= range.until) throw badRequest('INVALID_TIME_RANGE', 'since must be before until')
  return range
}

const jobAdminRoutes: FastifyPluginAsyncTypebox = async (fastify) => {
  const { tasks } = fastify.services

  fastify.get(
    '/',
    {
      schema: {
        tags,
        summary: 'Job records, newest first: the system queue’s, or one tenant’s; by state, type, tenant and time range, cursor paged',
        description:
          'state=failed lists what POST /admin/api/jobs/retry can retry. queue=tenant reads one tenant’s records (tenantId), or without ' +
          'tenantId every tenant’s failed jobs from BullMQ’s failed set (state=failed only: 400 TENANT_ID_REQUIRED otherwise).',
        querystring: ListQuery,
        response: { 200: page(JobSummary), ...errorResponses(400, 404) },
      },
    },
    async (req) => {
      const { queue = 'system', state, type, tenantId, limit, cursor } = req.query
      const { since, until } = timeRange(req.query.since, req.query.until)
      if (queue === 'tenant' && !tenantId) {
        if (state !== 'failed')
          throw badRequest('TENANT_ID_REQUIRED', 'queue=tenant lists one tenant’s job records (give tenantId), or every tenant’s failed jobs (state=failed)')
        return failedTenantJobs({ type, since, until, limit, cursor })
      }
      const rows = await tasks.listJobs({
        scope: queue,
        ...(tenantId ? { tenantId } : {}),
        ...(type ? { type } : {}),
        ...(state ? { status: state } : {}),
        ...(since ? { since } : {}),
        ...(until ? { until } : {}),
        ...(cursor ? { before: cursor } : {}),
        limit: limit + 1,
      })
      const items = rows.slice(0, limit)
      return {
        items: items.map((j) => ({
          id: j.id,
          queue: j.scope,
          tenantId: j.tenantId,
          jobType: j.jobType,
          status: j.status,
          errorLog: j.errorLog,
          retryCount: j.retryCount,
          maxRetries: j.maxRetries,
          createdAt: j.createdAt.toISOString(),
          startedAt: iso(j.startedAt),
          finishedAt: iso(j.finishedAt),
        })),
        nextCursor: rows.length > limit ? items.at(-1)!.id : null,
      }
    },
  )

  /**
   * Every tenant's failed jobs: their records are spread over the tenant databases, so they are read from
   * BullMQ's failed set (newest failure first; kept 7 days), filtered while scanning. The cursor is the last
   * job scanned, resumed from its rank; at most MAX_SCAN jobs are scanned per page, so a rare type may
   * answer a short page with a cursor.
   */
  async function failedTenantJobs(f: { type?: string | undefined; since?: Date | undefined; until?: Date | undefined; limit: number; cursor?: string | undefined }) {
    const queue = tasks.queues.tenant
    let start = 0
    if (f.cursor) {
      const client = fastify.services.redis
      const rank = await client.zrevrank(queue.toKey('failed'), f.cursor)
      if (rank === null) throw badRequest('INVALID_CURSOR', 'The cursor’s job is no longer failed (retried or removed): start from the first page')
      start = rank + 1
    }
    const items: Job[] = []
    let lastScanned: string | undefined
    let more = true
    for (let scanned = 0; items.length < f.limit && scanned < MAX_SCAN; scanned += FAILED_PAGE) {
      const jobs = (await queue.getJobs(['failed'], start + scanned, start + scanned + FAILED_PAGE - 1)).filter((j): j is Job => Boolean(j))
      for (const job of jobs) {
        lastScanned = job.id
        if (
          (!f.type || job.name === f.type) &&
          (!f.since || job.timestamp >= f.since.getTime()) &&
          (!f.until || job.timestamp < f.until.getTime())
        )
          items.push(job)
        if (items.length === f.limit) break
      }
      if (jobs.length < FAILED_PAGE && items.length < f.limit) {
        more = false
        break
      }
    }
    // Is anything left after the last job scanned? One look past it says.
    if (more && lastScanned) {
      const client = fastify.services.redis
      const rank = await client.zrevrank(queue.toKey('failed'), lastScanned)
      more = rank !== null && (await client.zcard(queue.toKey('failed'))) > rank + 1
    }
    const date = (ms: number | undefined) => (ms ? new Date(ms).toISOString() : null)
    return {
      items: items.map((job) => ({
        id: job.id!,
        queue: 'tenant' as const,
        tenantId: ((job.data as { tenantId?: string })?.tenantId ?? null) as string | null,
        jobType: job.name,
        status: 'failed' as const,
        errorLog: job.failedReason ?? null,
        retryCount: Math.max(0, job.attemptsMade - 1),
        maxRetries: Math.max(0, (job.opts.attempts ?? 1) - 1),
        createdAt: new Date(job.timestamp).toISOString(),
        startedAt: date(job.processedOn),
        finishedAt: date(job.finishedOn),
      })),
      nextCursor: more && lastScanned ? lastScanned : null,
    }
  }

  fastify.post(
    '/retry',
    {
      schema: {
        tags,
        summary: 'Retry failed jobs by ids or by a filter (type, tenant, time range), with BullMQ’s job.retry(); answers how many',
        body: RetryBody,
        response: { 200: RetryResult, ...errorResponses(400) },
      },
    },
    async (req) => {
      const { queue: queueName, ids, filter } = req.body
      if ((ids === undefined) === (filter === undefined)) throw badRequest('IDS_OR_FILTER', 'Give exactly one of ids and filter')
      const queue = tasks.queues.byScope(queueName)
      const skipped: { id: string; reason: 'not_found' | 'not_failed' }[] = []
      const candidates: Job[] = []
      let truncated = false
      if (ids) {
        for (const id of ids) {
          const job = await BullJob.fromId(queue, id)
          if (!job) skipped.push({ id, reason: 'not_found' })
          else candidates.push(job)
        }
      } else {
        const { since, until } = timeRange(filter!.since, filter!.until)
        const matches = (job: Job) =>
          (!filter!.type || job.name === filter!.type) &&
          (!filter!.tenantId || (job.data as { tenantId?: unknown })?.tenantId === filter!.tenantId) &&
          (!since || job.timestamp >= since.getTime()) &&
          (!until || job.timestamp < until.getTime())
        // Collected first, retried after: a retried job leaves the failed set and would shift the pages.
        for (let start = 0; ; start += FAILED_PAGE) {
          const jobs = (await queue.getJobs(['failed'], start, start + FAILED_PAGE - 1)).filter((j): j is Job => Boolean(j))
          for (const job of jobs) if (matches(job)) candidates.push(job)
          if (candidates.length > MAX_RETRY) {
            candidates.length = MAX_RETRY
            truncated = true
            break
          }
          if (jobs.length < FAILED_PAGE) break
        }
      }
      const retriedIds: string[] = []
      for (const job of candidates) {
        try {
          // retry() checks the state itself, atomically: a job that is not failed (any more) throws.
          await job.retry('failed', { resetAttemptsMade: true, resetAttemptsStarted: true })
          retriedIds.push(job.id!)
        } catch {
          skipped.push({ id: job.id!, reason: 'not_failed' })
        }
      }
      await audit(
        fastify.host.db,
        {
          action: 'admin.jobs_retried',
          actorUserId: req.user!.id,
          targetType: 'queue',
          targetId: queueName,
          metadata: { ...(ids ? { ids: ids.length } : { filter }), matched: ids ? ids.length : candidates.length, retried: retriedIds.length, retriedIds: retriedIds.slice(0, 100) },
        },
        req,
      )
      return {
        matched: ids ? ids.length : candidates.length,
        retried: retriedIds.length,
        retriedIds: retriedIds.slice(0, 1000),
        skipped: skipped.slice(0, MAX_SKIPPED_LISTED),
        truncated,
      }
    },
  )

  fastify.get(
    '/:id',
    { schema: { tags, summary: 'One platform job, with its progress or result', params: IdParams, response: { 200: SystemJob, ...errorResponses(400, 404) } } },
    async (req) => {
      const job = await fastify.services.tasks.getJob(req.params.id, 'system')
      return {
        id: job.id,
        jobType: job.jobType,
        status: job.status,
        result: job.result ?? null,
        errorLog: job.errorLog,
        retryCount: job.retryCount,
        createdAt: job.createdAt.toISOString(),
        startedAt: iso(job.startedAt),
        finishedAt: iso(job.finishedAt),
        queueState: job.queueState,
      }
    },
  )
}

export default jobAdminRoutes
