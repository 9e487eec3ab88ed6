/**
 * Who is calling. `fastify.requireUser` (a preValidation hook, like every guard: 401 before a 400) puts the session's user on `request.user`, or
 * answers 401 UNAUTHENTICATED. The user comes from a snapshot in the session, re-read from the host DB
 * every USER_SNAPSHOT_MS: the session itself is read from Redis on every
 * request, so logout and revocation still take effect at once. A session past its absolute lifetime
 * is destroyed here. `request.signIn(user)` regenerates the session id (no fixation) and starts the clocks.
 * A session started before the user's sessions_valid_after is destroyed too (401 SESSION_REVOKED):
 * checked against the DB row at each re-read, and at once on every request for cutoffs published by
 * `fastify.revokeUserCredentials` (src/core/identity/session-revocations.ts), which also voids older API keys.
 *
 * Sessions and API keys are alternatives. A request with an `Authorization` header is never
 * authenticated by its cookie: `fastify.authenticateApiKey` (called by the tenant guard, so only under
 * /api) turns a valid `Bearer tk_…` key into `request.user` (the key's creator) and `request.apiKey`;
 * everywhere else (/me, /tenants, /auth/logout, /admin) `requireUser` answers 401 SESSION_REQUIRED
 * to such a request. Those routes act on a person's identity and sessions (switching tenants, creating
 * tenants, logging out), which a tenant-scoped key has no business doing; refusing them also means a
 * cookie can never ride along with a header that exempts the request from CSRF checks.
 */
import type { FastifyReply, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import { throttledWarn } from '../lib/redis.js'
import type { User } from '../../../drizzle/host/schema.js'
import type { AppOptions } from '../config.js'
import { type ApiKeyIdentity, type ApiKeys, createApiKeys } from './api-keys.js'
import { createSessionRevocations } from './session-revocations.js'
import { createUserTokens, type UserTokens } from './user-tokens.js'
import { type PublicUser, createUsersRepository, toPublicUser, userDisabled, type UsersRepository } from './users.js'
import { unauthorized } from '../lib/errors.js'
import { bindLogContext } from '../lib/request-context.js'

declare module 'fastify' {
  interface FastifyInstance {
    users: UsersRepository
    requireUser: (req: FastifyRequest, reply: FastifyReply) => Promise<void>
    apiKeys: ApiKeys
    /**
     * null without an Authorization header; else the key (setting request.user/apiKey) or 401 INVALID_API_KEY.
     * Synchronous when the key is cached (a promise only on a miss or a due last_used_at write; errors may be thrown).
     */
    authenticateApiKey: (req: FastifyRequest) => ApiKeyIdentity | null | Promise<ApiKeyIdentity | null>
    /**
     * requireUser's check without a promise when it needs none (the session's user snapshot is fresh):
     * undefined once `request.user` is set, a promise when it must read the user or end the session.
     * Errors may be thrown synchronously. Hooks use `requireUser`.
     */
    resolveUser: (req: FastifyRequest) => undefined | Promise<void>
    /**
     * After writing users.sessions_valid_after = `at` (same UPDATE as the change that calls for it):
     * the user's sessions started and API keys created before `at` stop working in every process now.
     */
    revokeUserCredentials: (userId: string, at: Date) => Promise<void>
    /** After writing users.sessions_revoked_at = `at`: the user's sessions started before `at` end in every process now (API keys stay). */
    revokeUserSessions: (userId: string, at: Date) => Promise<void>
    /** Single-use tokens mailed to users (verify email, password reset, email change). */
    userTokens: UserTokens
  }
  interface FastifyRequest {
    user: PublicUser | null
    /** The API key this request was authenticated by, or null for a session (or no) caller. */
    apiKey: ApiKeyIdentity | null
    signIn(user: User, activeTenantId?: string): Promise<void>
    signOut(): Promise<void>
  }
}

export default fp<AppOptions>(
  async (fastify, { config }) => {
    const users = createUsersRepository(fastify.host.db)
    const absoluteMaxMs = config.session.absoluteMaxS * 1000
    const USER_SNAPSHOT_MS = 30_000
    fastify.decorate('users', users)
    fastify.decorate('userTokens', createUserTokens(fastify.host.db))
    fastify.decorateRequest('user', null)
    fastify.decorateRequest('apiKey', null)

    // Both listen on the process' invalidation bus (fastify.services.invalidations), which logs its own
    // connection's errors; last_used_at write failures repeat while Postgres is down: one line per 10 s.
    const apiKeys = createApiKeys({
      db: fastify.host.db,
      redis: fastify.redis,
      bus: fastify.services.invalidations,
      channel: `${config.redisPrefix}:api-keys`,
      env: config.env,
      onError: throttledWarn(fastify.log),
    })
    await apiKeys.ready
    fastify.addHook('onClose', () => apiKeys.close())
    fastify.decorate('apiKeys', apiKeys)

    const revocations = createSessionRevocations({
      redis: fastify.redis,
      bus: fastify.services.invalidations,
      channel: `${config.redisPrefix}:session-revocations`,
    })
    await revocations.ready
    fastify.addHook('onClose', () => revocations.close())
    fastify.decorate('revokeUserCredentials', async (userId: string, at: Date) => {
      await revocations.publish(userId, at)
      await apiKeys.invalidateCreator(userId)
    })
    fastify.decorate('revokeUserSessions', (userId: string, at: Date) => revocations.publish(userId, at))
    /** Sessions die at the later of the two cutoffs: credentials (sessions and keys) and sessions only. */
    const sessionCutoff = (user: User) => {
      const at = Math.max(user.sessionsValidAfter?.getTime() ?? 0, user.sessionsRevokedAt?.getTime() ?? 0)
      return at === 0 ? undefined : at
    }
    const revoked = async (req: FastifyRequest, validAfterMs: number | undefined) => {
      if (validAfterMs === undefined || (req.session.createdAt ?? 0) >= validAfterMs) return
      await req.session.destroy()
      throw unauthorized('SESSION_REVOKED', 'This session was ended by a change to the account, please log in again')
    }
    const keyFound = (req: FastifyRequest, key: ApiKeyIdentity) => {
      req.apiKey = key
      req.user = key.user
      bindLogContext(req, { userId: key.user.id })
      return key
    }
    fastify.decorate('authenticateApiKey', (req: FastifyRequest) => {
      const header = req.headers.authorization
      if (header === undefined) return null
      const key = apiKeys.check(header)
      return key instanceof Promise ? key.then((k) => keyFound(req, k)) : keyFound(req, key)
    })

    fastify.decorateRequest('signIn', async function signIn(this: FastifyRequest, user: User, activeTenantId?: string) {
      // Login routes refuse a disabled user themselves (with their own answer); this is the last line.
      if (user.disabledAt) throw userDisabled()
      await this.session.regenerate()
      const now = Date.now()
      this.session.userId = user.id
      this.session.activeTenantId = activeTenantId
      this.session.createdAt = now
      this.session.refreshedAt = now
      this.session.user = toPublicUser(user)
      this.session.userLoadedAt = now
      this.user = this.session.user
      bindLogContext(this, { userId: user.id })
    })

    fastify.decorateRequest('signOut', async function signOut(this: FastifyRequest) {
      await this.session.destroy()
      this.user = null
    })

    // The common case (a live session whose user snapshot is fresh) is synchronous: no promise per request.
    const resolveUser = (req: FastifyRequest): undefined | Promise<void> => {
      if (req.user) return
      if (req.headers.authorization !== undefined) {
        throw unauthorized('SESSION_REQUIRED', 'This route needs a logged-in session; API keys are accepted only under /api')
      }
      const userId = req.session.userId
      if (!userId) throw unauthorized()
      const now = Date.now()
      if (absoluteMaxMs > 0 && now - (req.session.createdAt ?? 0) > absoluteMaxMs) return expire(req)
      const validAfter = revocations.validAfter(userId)
      if (validAfter !== undefined && (req.session.createdAt ?? 0) < validAfter) return revoked(req, validAfter)
      const snapshot = req.session.user
      if (snapshot?.id === userId && now - (req.session.userLoadedAt ?? 0) < USER_SNAPSHOT_MS) {
        req.user = snapshot
        bindLogContext(req, { userId })
        return
      }
      return reload(req, userId)
    }
    const expire = async (req: FastifyRequest) => {
      await req.session.destroy()
      throw unauthorized('SESSION_EXPIRED', 'Session expired, please log in again')
    }
    const reload = async (req: FastifyRequest, userId: string) => {
      const user = await users.findById(userId)
      if (!user || user.deletedAt) {
        await req.session.destroy()
        throw unauthorized()
      }
      if (user.disabledAt) {
        await req.session.destroy()
        throw unauthorized('USER_DISABLED', 'This account is disabled')
      }
      await revoked(req, sessionCutoff(user))
      req.session.user = req.user = toPublicUser(user)
      req.session.userLoadedAt = Date.now()
      bindLogContext(req, { userId })
    }
    fastify.decorate('resolveUser', resolveUser)
    fastify.decorate('requireUser', async (req: FastifyRequest) => {
      await resolveUser(req)
    })
  },
  { name: 'auth', dependencies: ['host-db', 'session', 'redis', 'services'] },
)
