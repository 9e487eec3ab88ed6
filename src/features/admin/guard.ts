/**
 * Who may use /admin: platform administrators only (src/core/identity/platform-admins.ts). 401 without a
 * session (or with an API key), 403 PLATFORM_ADMIN_REQUIRED for anyone else. Read from the host DB on
 * every request, not the session's snapshot: a revocation must apply at once, and /admin is rarely called.
 * Shared by Bull Board (/admin/queues) and the admin API (/admin/api/…); install it in preValidation,
 * like every guard of the kit, so a caller who may not act never learns anything from a 400.
 */
import type { FastifyInstance, FastifyRequest, RouteOptions } from 'fastify'
import type { Config } from '../../core/config.js'
import { isPlatformAdmin } from '../../core/identity/platform-admins.js'
import { forbidden } from '../../core/lib/errors.js'
import { addErrorResponses, authScope } from '../../core/lib/openapi.js'

export function platformAdminGuard(fastify: FastifyInstance, config: Pick<Config, 'platformAdminEmails'>) {
  return async (req: FastifyRequest) => {
    await fastify.requireUser(req, undefined as never)
    const user = await fastify.users.findById(req.user!.id)
    if (!user || !isPlatformAdmin(user, config.platformAdminEmails)) throw forbidden('PLATFORM_ADMIN_REQUIRED', 'Platform administrators only')
  }
}

/** Install on an admin API scope next to the guard: documents the session auth and the guard's 401/403. */
export const platformAdminScope = (route: RouteOptions) => {
  authScope('session')(route)
  if (route.schema && !(route.schema as { hide?: boolean }).hide) addErrorResponses(route as Parameters<typeof addErrorResponses>[0], [401, 403])
}
