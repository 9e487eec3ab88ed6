/** /api/jobs — the resolved tenant's background jobs (its tenant_jobs records plus BullMQ's state), for admins. */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from 'typebox'
import type { JobRecord } from '../../core/jobs/records.js'
import { iso } from '../../core/lib/dates.js'
import { errorResponses, IdParams, Text, Uuid, uuid } from '../../core/lib/schemas.js'

const Status = Type.Union([Type.Literal('pending'), Type.Literal('running'), Type.Literal('completed'), Type.Literal('failed')])
const DateOrNull = Type.Union([Type.String({ format: 'date-time' }), Type.Null()])
const Job = Type.Object({
  id: Uuid,
  jobType: Type.String(),
  status: Status,
  payload: Type.Record(Type.String(), Type.Unknown()),
  result: Type.Unknown(),
  errorLog: Type.Union([Type.String(), Type.Null()]),
  retryCount: Type.Integer(),
  maxRetries: Type.Integer(),
  createdAt: Type.String({ format: 'date-time' }),
  startedAt: DateOrNull,
  finishedAt: DateOrNull,
})
const JobWithState = Type.Intersect([Job, Type.Object({ queueState: Type.String() })])

const toJson = (r: JobRecord) => ({
  id: r.id,
  jobType: r.jobType,
  status: r.status,
  payload: r.payload,
  result: r.result ?? null,
  errorLog: r.errorLog,
  retryCount: r.retryCount,
  maxRetries: r.maxRetries,
  createdAt: r.createdAt.toISOString(),
  startedAt: iso(r.startedAt),
  finishedAt: iso(r.finishedAt),
})
const errors = errorResponses(400, 401, 403, 404, 409)

const jobRoutes: FastifyPluginAsyncTypebox = async (fastify) => {
  const { tasks } = fastify.services

  fastify.get(
    '/',
    {
      config: { access: { minRole: 'admin' } },
      schema: {
        tags: ['jobs'],
        summary: 'This tenant’s jobs, newest first',
        querystring: Type.Object(
          {
            type: Type.Optional(Text({ minLength: 1, maxLength: 100 })),
            status: Type.Optional(Status),
            limit: Type.Integer({ minimum: 1, maximum: 200, default: 50 }),
            before: Type.Optional(uuid({ description: 'cursor: the last id of the previous page' })),
          },
          { additionalProperties: false },
        ),
        response: { 200: Type.Object({ items: Type.Array(Job) }), ...errors },
      },
    },
    async (req) => ({ items: (await tasks.listJobs({ ...req.query, tenantId: req.tenant!.id })).map(toJson) }),
  )

  fastify.get(
    '/:id',
    {
      config: { access: { minRole: 'admin' } },
      schema: { tags: ['jobs'], summary: 'One job of this tenant, with its queue state', params: IdParams, response: { 200: JobWithState, ...errors } },
    },
    async (req) => {
      const job = await tasks.getJob(req.params.id, { tenantId: req.tenant!.id })
      return { ...toJson(job), queueState: job.queueState }
    },
  )
}

export default jobRoutes
