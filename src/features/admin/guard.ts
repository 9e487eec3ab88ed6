/**
 * Who may use /admin: platform administrators only (src/core/identity/platform-admins.ts). 401 without a
 * session, 403 PLATFORM_ADMIN_REQUIRED for anyone else. Read from the host DB on every request, not the
 * session's snapshot: a revocation must apply at once, and /admin is rarely called.
 * Shared by Bull Board (/admin/queues) and the admin API (/admin/api/…); install it in preValidation,
 * like every guard of the kit, so a caller who may not act never learns anything from a 400.
 *
 * The admin API also takes `Authorization: Bearer tka_…`, a platform API key (api-keys.ts), instead of a
 * session: the request then acts as the key's creator (who must still be a platform admin), never reads the
 * cookie (and needs no CSRF token), and every use writes an `admin.api_key_used` audit row; every other row the
 * request writes names the key too (actor_api_key_id). A tenant key (`tk_…`) is 401 INVALID_API_KEY here.
 * Bull Board stays session-only (`{ apiKeys: false }`: its writes are checked by origin, for browsers).
 */
import type { FastifyInstance, FastifyRequest, RouteOptions } from 'fastify'
import type { Config } from '../../core/config.js'
import { isPlatformAdmin } from '../../core/identity/platform-admins.js'
import { toPublicUser } from '../../core/identity/users.js'
import { audit } from '../../core/lib/audit.js'
import { forbidden } from '../../core/lib/errors.js'
import { addErrorResponses, authScope } from '../../core/lib/openapi.js'
import { bindLogContext } from '../../core/lib/request-context.js'
import { createAdminApiKeys } from './api-keys.js'

export function platformAdminGuard(
  fastify: FastifyInstance,
  config: Pick<Config, 'platformAdminEmails' | 'env'>,
  { apiKeys = true }: { apiKeys?: boolean } = {},
) {
  const keys = createAdminApiKeys(fastify.host.db, config.env, config.platformAdminEmails)
  return async (req: FastifyRequest) => {
    if (apiKeys && req.headers.authorization !== undefined) {
      const { key, user } = await keys.authenticate(req.headers.authorization)
      req.user = toPublicUser(user)
      req.actorApiKeyId = key.id
      bindLogContext(req, { userId: user.id })
      await audit(
        fastify.host.db,
        {
          action: 'admin.api_key_used',
          actorUserId: user.id,
          targetType: 'admin_api_key',
          targetId: key.id,
          metadata: { method: req.method, route: req.routeOptions.url, url: req.url.slice(0, 512) },
        },
        req,
      )
      return
    }
    await fastify.requireUser(req, undefined as never)
    const user = await fastify.users.findById(req.user!.id)
    if (!user || !isPlatformAdmin(user, config.platformAdminEmails)) throw forbidden('PLATFORM_ADMIN_REQUIRED', 'Platform administrators only')
  }
}

/** Install on an admin API scope next to the guard: documents the auth (session or platform API key) and the guard's 401/403. */
export const platformAdminScope = (route: RouteOptions) => {
  authScope('session')(route)
  if (!route.schema || (route.schema as { hide?: boolean }).hide) return
  addErrorResponses(route as Parameters<typeof addErrorResponses>[0], [401, 403])
  route.schema = { ...route.schema, security: [{ session: [] }, { adminApiKey: [] }] } as typeof route.schema
}
