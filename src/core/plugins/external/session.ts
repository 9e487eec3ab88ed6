/**
 * Server-side sessions in Redis (connect-redis store; never the memory store). The cookie holds only
 * a signed id. Sliding expiry: a logged-in request re-saves the session with a fresh TTL, so
 * SESSION_MAX_AGE_S counts inactivity — but at most once per tenth of that age, not on every request
 * (`rolling` would cost a Redis write per request on the hot path). SESSION_ABSOLUTE_MAX_S, when set,
 * caps a session's total life (enforced in plugins/app/auth.ts from `createdAt`).
 */
import session from '@fastify/session'
import RedisStore from 'connect-redis'
import fp from 'fastify-plugin'
import type { AppOptions } from '../../config.js'
import type { PublicUser } from '../../identity/users.js'

declare module 'fastify' {
  interface Session {
    userId?: string
    /** Snapshot of the user, refreshed from the host DB every USER_SNAPSHOT_MS. */
    user?: PublicUser
    userLoadedAt?: number
    /** ms since epoch of the last sliding refresh. */
    refreshedAt?: number
    activeTenantId?: string
    /** ms since epoch when the user logged in: the absolute-lifetime clock. */
    createdAt?: number
  }
}

export const SESSION_COOKIE = 'sid'

export default fp<AppOptions>(
  async (fastify, { config }) => {
    const { maxAgeS, secrets, cookieSecure } = config.session
    await fastify.register(session, {
      secret: secrets,
      cookieName: SESSION_COOKIE,
      store: new RedisStore({ client: fastify.redis, prefix: `${config.redisPrefix}:sess:`, ttl: maxAgeS }),
      saveUninitialized: false,
      rolling: false,
      cookie: { httpOnly: true, secure: cookieSecure, sameSite: 'lax', path: '/', maxAge: maxAgeS * 1000 },
    })
    const refreshMs = Math.min(60_000, (maxAgeS * 1000) / 10)
    fastify.addHook('onRequest', async (req) => {
      const session = req.session
      // A cookie signed with an older secret (rotation) must be re-issued under the newest one: left
      // unsaved, @fastify/session clears a cookie whose signature differs, logging the user out.
      const resign = session?.userId && req.cookies[SESSION_COOKIE] !== session.encryptedSessionId
      if (session?.userId && (resign || Date.now() - (session.refreshedAt ?? 0) >= refreshMs)) {
        session.touch()
        session.refreshedAt = Date.now() // modifies the session: saved with a new TTL and cookie on send
      }
    })
  },
  { name: 'session', dependencies: ['cookie', 'redis'] },
)
