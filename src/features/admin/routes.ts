/**
 * /admin — platform administration, for platform administrators only (401 without a session, 403
 * PLATFORM_ADMIN_REQUIRED otherwise, guard.ts): Bull Board at /admin/queues (the system, tenant and schedules
 * queues; the JSON admin API is in api/). Who is one is read from the host DB
 * on every request (src/core/identity/platform-admins.ts): core_users.is_platform_admin, granted with
 * `npm run users -- grant-admin <email>`, or a VERIFIED email listed in PLATFORM_ADMIN_EMAILS.
 *
 * Writes (pause, resume, retry, clean, …) are protected against cross-site requests by their origin
 * (`Sec-Fetch-Site`, else `Origin`), not by the CSRF token: Bull Board's UI never sends one. That check
 * runs after the admin check, so only an administrator learns why a write was refused (403
 * CROSS_SITE_REQUEST). Errors leave in the kit's `{statusCode, error, message, code}` shape.
 */
import { createBullBoard } from '@bull-board/api'
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter'
import { FastifyAdapter } from '@bull-board/fastify'
import { Queue } from 'bullmq'
import type { FastifyPluginAsync, FastifyRequest, RouteOptions } from 'fastify'
import type { AppOptions } from '../../core/config.js'
import { SCHEDULES_QUEUE } from '../../core/jobs/schedules.js'
import { queuePrefix } from '../../core/jobs/queues.js'
import { logRedisErrors } from '../../core/lib/redis.js'
import { errorBody, forbidden } from '../../core/lib/errors.js'
import { toErrorBody } from '../../core/plugins/errors.js'
import { platformAdminGuard } from './guard.js'

const SAFE = new Set(['GET', 'HEAD', 'OPTIONS'])

/**
 * Did the browser send this request from one of our own pages? `Sec-Fetch-Site` (every current
 * browser) says so directly; otherwise the `Origin` must be this server's or APP_BASE_URL's. A request
 * with neither header is refused: browsers send `Origin` on every write, so only a hand-made request
 * lacks it, and it can add one.
 */
export function isSameOrigin(req: FastifyRequest, appBaseUrl: string): boolean {
  const site = req.headers['sec-fetch-site']
  if (typeof site === 'string') return site === 'same-origin'
  const origin = req.headers.origin
  if (typeof origin !== 'string') return false
  return origin === new URL(appBaseUrl).origin || origin === `${req.protocol}://${req.host}`
}

/** Bull Board's page links a Google Fonts stylesheet: outside our CSP (and a third party told who opens the admin). */
const EXTERNAL_STYLESHEET = /<link\b[^>]*href="https:\/\/fonts\.googleapis\.com[^"]*"[^>]*>/g

const adminRoutes: FastifyPluginAsync<AppOptions> = async (fastify, { config }) => {
  // Bull Board's own routes: no CSRF token (its UI never sends one); the origin check below instead.
  fastify.addHook('onRoute', (route: RouteOptions) => {
    route.config = { ...route.config, csrf: false }
  })

  // In preValidation like every guard of the kit: 401/403 before anything about the request itself.
  const requirePlatformAdmin = platformAdminGuard(fastify, config, { apiKeys: false })
  fastify.addHook('preValidation', async (req: FastifyRequest) => {
    await requirePlatformAdmin(req)
    if (!SAFE.has(req.method) && !isSameOrigin(req, config.appBaseUrl)) {
      throw forbidden('CROSS_SITE_REQUEST', 'Admin actions must come from the admin pages of this site')
    }
  })

  // Bull Board answers some errors itself, as `{error: {key: 'ERRORS.QUEUE_NOT_FOUND'}}`: the kit's shape instead.
  fastify.addHook('preSerialization', async (_req, reply, payload: unknown) => {
    if (reply.statusCode < 400 || typeof payload !== 'object' || payload === null || 'code' in payload) return payload
    const error = (payload as { error?: unknown }).error
    const key = typeof error === 'object' && error !== null && 'key' in error ? String(error.key) : typeof error === 'string' ? error : ''
    const code = key.split('.').pop()?.replace(/[^A-Za-z0-9]+/g, '_').toUpperCase() || 'ADMIN_ERROR'
    const message = code.charAt(0) + code.slice(1).toLowerCase().replaceAll('_', ' ')
    return errorBody(reply.statusCode, code, message)
  })

  fastify.addHook('onSend', async (_req, reply, payload) => {
    if (typeof payload !== 'string' || !String(reply.getHeader('content-type') ?? '').startsWith('text/html')) return payload
    return payload.replace(EXTERNAL_STYLESHEET, '')
  })

  const board = new FastifyAdapter()
  const { queues } = fastify.services.tasks
  // The schedulers' ticks (src/core/jobs/schedules.ts): only the worker process makes that queue, so the
  // board gets its own handle on it, over the shared producer connection (not closed by BullMQ).
  const schedules = new Queue(SCHEDULES_QUEUE, { connection: fastify.services.redis, prefix: queuePrefix(config, SCHEDULES_QUEUE) })
  logRedisErrors(schedules, fastify.log, `queue ${SCHEDULES_QUEUE}`)
  fastify.addHook('onClose', () => schedules.close())
  createBullBoard({
    queues: [new BullMQAdapter(queues.system), new BullMQAdapter(queues.tenant), new BullMQAdapter(schedules)],
    serverAdapter: board,
  })
  // The kit's error shape, not Bull Board's (which carries the stack trace): its plugin installs this handler for its routes.
  board.setErrorHandler((err: Error) => {
    const body = toErrorBody(err)
    if (body.statusCode >= 500) fastify.log.error({ err }, 'admin request failed')
    // (Bull Board's typings list only the statuses it answers itself.)
    return { status: body.statusCode as 500, body }
  })
  board.setBasePath('/admin/queues')
  await fastify.register(board.registerPlugin(), { prefix: '/queues' })
}

export default adminRoutes
