/** /admin/api/jobs/:id — a platform (system) job's record and queue state: how a bulk action's progress is followed. */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from 'typebox'
import type { AppOptions } from '../../../core/config.js'
import { iso } from '../../../core/lib/dates.js'
import { errorResponses, IdParams, Uuid } from '../../../core/lib/schemas.js'
import { platformAdminGuard, platformAdminScope } from '../guard.js'
import { DateTime, DateTimeOrNull, StringOrNull, tags } from './schemas.js'

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

const jobAdminRoutes: FastifyPluginAsyncTypebox<AppOptions> = async (fastify, { config }) => {
  fastify.addHook('preValidation', platformAdminGuard(fastify, config))
  fastify.addHook('onRoute', platformAdminScope)

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
