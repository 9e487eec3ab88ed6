/**
 * CSRF protection for cookie-authenticated writes (@fastify/csrf-protection, secret in the session).
 * A POST/PUT/PATCH/DELETE from a logged-in session must carry `x-csrf-token` (from GET /auth/csrf). Requests without a logged-in session (login, signup, webhooks) and
 * bearer/API-key requests (no ambient cookie authority) are exempt; a route can opt out with
 * `config: { csrf: false }`.
 */
import csrf from '@fastify/csrf-protection'
import type { FastifyReply, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import { routeConfig } from '../../lib/route-config.js'

declare module 'fastify' {
  interface FastifyContextConfig {
    csrf?: boolean
  }
}

const SAFE = new Set(['GET', 'HEAD', 'OPTIONS'])

export default fp(
  async (fastify) => {
    // '@fastify/session' mode only means "the secret is a property of req.session": our own sessions
    // (src/core/identity/sessions.ts) behave so, and save it when it is first set.
    await fastify.register(csrf, { sessionPlugin: '@fastify/session' })
    fastify.addHook('onRequest', (req: FastifyRequest, reply: FastifyReply, done: (err?: Error) => void) => {
      if (SAFE.has(req.method) || !req.session?.userId || routeConfig(req).csrf === false || req.headers.authorization) {
        return done()
      }
      fastify.csrfProtection(req, reply, done)
    })
  },
  { name: 'csrf', dependencies: ['session'] },
)
