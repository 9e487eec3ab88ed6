/**
 * /admin — platform administration, for the emails in PLATFORM_ADMIN_EMAILS only (401 without a
 * session, 403 PLATFORM_ADMIN_REQUIRED otherwise): Bull Board at /admin/queues.
 */
import { createBullBoard } from '@bull-board/api'
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter'
import { FastifyAdapter } from '@bull-board/fastify'
import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify'
import type { AppOptions } from '../../app.js'
import { forbidden } from '../../lib/errors.js'
import { toErrorBody } from '../../plugins/app/errors.js'

const adminRoutes: FastifyPluginAsync<AppOptions> = async (fastify, { config }) => {
  const admins = new Set(config.platformAdminEmails)
  // Answers itself rather than throwing: Bull Board's plugin installs its own error handler for its routes.
  fastify.addHook('onRequest', async (req: FastifyRequest, reply: FastifyReply) => {
    try {
      await fastify.requireUser(req, reply)
      if (!admins.has(req.user!.email.toLowerCase())) throw forbidden('PLATFORM_ADMIN_REQUIRED', 'Platform administrators only')
    } catch (err) {
      const body = toErrorBody(err as Error)
      return reply.code(body.statusCode).send(body)
    }
  })

  const board = new FastifyAdapter()
  const { queues } = fastify.services.tasks
  createBullBoard({ queues: [new BullMQAdapter(queues.system), new BullMQAdapter(queues.tenant)], serverAdapter: board })
  board.setBasePath('/admin/queues')
  await fastify.register(board.registerPlugin(), { prefix: '/queues' })
}

export default adminRoutes
