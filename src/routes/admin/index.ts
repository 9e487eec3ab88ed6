/**
 * /admin — platform administration, for platform administrators only (401 without a session, 403
 * PLATFORM_ADMIN_REQUIRED otherwise): Bull Board at /admin/queues. Who is one is read from the host DB
 * on every request (src/auth/platform-admins.ts): core_users.is_platform_admin, granted with
 * `npm run users -- grant-admin <email>`, or a VERIFIED email listed in PLATFORM_ADMIN_EMAILS.
 */
import { createBullBoard } from '@bull-board/api'
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter'
import { FastifyAdapter } from '@bull-board/fastify'
import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify'
import type { AppOptions } from '../../app.js'
import { isPlatformAdmin } from '../../auth/platform-admins.js'
import { forbidden } from '../../lib/errors.js'
import { toErrorBody } from '../../plugins/app/errors.js'

const adminRoutes: FastifyPluginAsync<AppOptions> = async (fastify, { config }) => {
  // Answers itself rather than throwing: Bull Board's plugin installs its own error handler for its routes.
  fastify.addHook('onRequest', async (req: FastifyRequest, reply: FastifyReply) => {
    try {
      await fastify.requireUser(req, reply)
      // Not the session's snapshot: a revocation must apply at once, and /admin is rarely called.
      const user = await fastify.users.findById(req.user!.id)
      if (!user || !isPlatformAdmin(user, config.platformAdminEmails))
        throw forbidden('PLATFORM_ADMIN_REQUIRED', 'Platform administrators only')
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
