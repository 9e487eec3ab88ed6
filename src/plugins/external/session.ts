/**
 * Server-side sessions in Redis (connect-redis store; never the memory store). The cookie holds only
 * a signed id. Sliding expiry: every request re-saves the session with a fresh TTL (`rolling`), so
 * SESSION_MAX_AGE_S counts inactivity; SESSION_ABSOLUTE_MAX_S, when set, caps a session's total life
 * (enforced in plugins/app/auth.ts from `createdAt`).
 */
import session from '@fastify/session'
import RedisStore from 'connect-redis'
import fp from 'fastify-plugin'
import type { AppOptions } from '../../app.js'

declare module 'fastify' {
  interface Session {
    userId?: string
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
      rolling: true,
      cookie: { httpOnly: true, secure: cookieSecure, sameSite: 'lax', path: '/', maxAge: maxAgeS * 1000 },
    })
  },
  { name: 'session', dependencies: ['cookie', 'redis'] },
)
