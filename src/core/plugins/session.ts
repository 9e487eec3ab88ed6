/**
 * Server-side sessions in Redis (src/core/identity/sessions.ts: the store, its per-process cache and why
 * it replaced @fastify/session). The cookie holds only a signed id. Sliding expiry: a logged-in request
 * re-saves the session with a fresh TTL, so SESSION_MAX_AGE_S counts inactivity — but at most once per
 * tenth of that age, not on every request (a Redis write per request on the hot path). SESSION_ABSOLUTE_MAX_S,
 * when set, caps a session's total life (enforced by requireUser from `createdAt`).
 */
import type { FastifyReply, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import type { AppOptions } from '../config.js'
import type { PublicUser } from '../identity/users.js'
import { createSessions, type SessionControl, type Sessions } from '../identity/sessions.js'

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
    /** @fastify/csrf-protection's secret. */
    _csrf?: string
  }
  interface FastifyRequest {
    session: Session & SessionControl
  }
  interface FastifyInstance {
    sessions: Sessions
  }
}

export const SESSION_COOKIE = 'sid'

const kSession = Symbol('session')
type WithSession = FastifyRequest & { [kSession]?: FastifyRequest['session'] }

export default fp<AppOptions>(
  async (fastify, { config }) => {
    const { maxAgeS, secrets, cookieSecure, cacheTtlMs } = config.session
    const sessions = createSessions({
      redis: fastify.redis,
      bus: fastify.services.invalidations,
      prefix: `${config.redisPrefix}:sess:`,
      channel: `${config.redisPrefix}:sessions`,
      secrets,
      maxAgeS,
      cacheTtlMs,
    })
    await sessions.ready
    fastify.addHook('onClose', () => sessions.close())
    fastify.decorate('sessions', sessions)
    // A request without a cookie (every API-key request) builds its empty session only if something reads it.
    fastify.decorateRequest('session', {
      getter(this: WithSession) {
        this[kSession] ??= sessions.open(undefined) as FastifyRequest['session']
        return this[kSession]
      },
      setter(this: WithSession, session: FastifyRequest['session']) {
        this[kSession] = session
      },
    })

    const refreshMs = Math.min(60_000, (maxAgeS * 1000) / 10)
    const attach = (req: FastifyRequest, session: FastifyRequest['session']) => {
      req.session = session
      if (session.userId && Date.now() - (session.refreshedAt ?? 0) >= refreshMs) {
        session.refreshedAt = Date.now() // a change: saved with a new TTL and cookie on send
      }
    }
    // Callback style: a cache hit opens the session synchronously, with no promise on the hot path.
    fastify.addHook('onRequest', (req: FastifyRequest, _reply: FastifyReply, done: (err?: Error) => void) => {
      const cookie = req.cookies[SESSION_COOKIE]
      if (!cookie) return done() // the getter makes the empty session if anything asks
      const opened = sessions.open(cookie)
      if (opened instanceof Promise)
        opened.then(
          (session) => {
            attach(req, session as FastifyRequest['session'])
            done()
          },
          done,
        )
      else {
        attach(req, opened as FastifyRequest['session'])
        done()
      }
    })

    fastify.addHook('onSend', (req: FastifyRequest, reply: FastifyReply, _payload: unknown, done: (err?: Error) => void) => {
      const session = (req as WithSession)[kSession]
      // Answered before the session was read (load shedding, a bad request), or a cookieless request that never used it.
      if (!session) return done()
      const hadCookie = req.cookies[SESSION_COOKIE] !== undefined
      const pending = sessions.pending(session, hadCookie)
      if (pending === undefined) return done()
      if (pending === 'clear') {
        reply.clearCookie(SESSION_COOKIE, { path: '/' })
        return done()
      }
      // A Secure cookie can't go over plain http: neither saved nor sent (the browser would drop it anyway).
      if (cookieSecure && req.protocol !== 'https') return done()
      sessions.save(session).then(({ cookie, expires }) => {
        reply.setCookie(SESSION_COOKIE, cookie, { httpOnly: true, secure: cookieSecure, sameSite: 'lax', path: '/', expires })
        done()
      }, done)
    })
  },
  { name: 'session', dependencies: ['cookie', 'redis', 'services'] },
)
