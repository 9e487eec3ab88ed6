/**
 * Who is calling. `fastify.requireUser` (a preHandler) puts the session's user on `request.user`, or
 * answers 401 UNAUTHENTICATED. The user comes from a snapshot in the session, re-read from the host DB
 * every USER_SNAPSHOT_MS (seed `session_cache`): the session itself is read from Redis on every
 * request, so logout and revocation still take effect at once. A session past its absolute lifetime
 * is destroyed here. `request.signIn(user)` regenerates the session id (no fixation) and starts the clocks.
 */
import type { FastifyReply, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import type { User } from '../../../drizzle/host/schema.js'
import type { AppOptions } from '../../app.js'
import { type PublicUser, createUsersRepository, toPublicUser, type UsersRepository } from '../../auth/users.js'
import { unauthorized } from '../../lib/errors.js'

declare module 'fastify' {
  interface FastifyInstance {
    users: UsersRepository
    requireUser: (req: FastifyRequest, reply: FastifyReply) => Promise<void>
  }
  interface FastifyRequest {
    user: PublicUser | null
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
    fastify.decorateRequest('user', null)

    fastify.decorateRequest('signIn', async function signIn(this: FastifyRequest, user: User, activeTenantId?: string) {
      await this.session.regenerate()
      const now = Date.now()
      this.session.userId = user.id
      this.session.activeTenantId = activeTenantId
      this.session.createdAt = now
      this.session.refreshedAt = now
      this.session.user = toPublicUser(user)
      this.session.userLoadedAt = now
      this.user = this.session.user
    })

    fastify.decorateRequest('signOut', async function signOut(this: FastifyRequest) {
      await this.session.destroy()
      this.user = null
    })

    fastify.decorate('requireUser', async (req: FastifyRequest) => {
      if (req.user) return
      const userId = req.session.userId
      if (!userId) throw unauthorized()
      if (absoluteMaxMs > 0 && Date.now() - (req.session.createdAt ?? 0) > absoluteMaxMs) {
        await req.session.destroy()
        throw unauthorized('SESSION_EXPIRED', 'Session expired, please log in again')
      }
      const snapshot = req.session.user
      if (snapshot?.id === userId && Date.now() - (req.session.userLoadedAt ?? 0) < USER_SNAPSHOT_MS) {
        req.user = snapshot
        return
      }
      const user = await users.findById(userId)
      if (!user) {
        await req.session.destroy()
        throw unauthorized()
      }
      req.session.user = req.user = toPublicUser(user)
      req.session.userLoadedAt = Date.now()
    })
  },
  { name: 'auth', dependencies: ['host-db', 'session'] },
)
