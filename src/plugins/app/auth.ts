/**
 * Who is calling. `fastify.requireUser` (a preHandler) loads the session's user from the host DB and
 * puts it on `request.user`, or answers 401 UNAUTHENTICATED. A session past its absolute lifetime is
 * destroyed here. `request.signIn(user)` regenerates the session id (no fixation) and starts the clocks.
 */
import type { FastifyReply, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import type { User } from '../../../drizzle/host/schema.js'
import type { AppOptions } from '../../app.js'
import { createUsersRepository, type UsersRepository } from '../../auth/users.js'
import { unauthorized } from '../../lib/errors.js'

declare module 'fastify' {
  interface FastifyInstance {
    users: UsersRepository
    requireUser: (req: FastifyRequest, reply: FastifyReply) => Promise<void>
  }
  interface FastifyRequest {
    user: User | null
    signIn(user: User, activeTenantId?: string): Promise<void>
    signOut(): Promise<void>
  }
}

export default fp<AppOptions>(
  async (fastify, { config }) => {
    const users = createUsersRepository(fastify.host.db)
    const absoluteMaxMs = config.session.absoluteMaxS * 1000
    fastify.decorate('users', users)
    fastify.decorateRequest('user', null)

    fastify.decorateRequest('signIn', async function signIn(this: FastifyRequest, user: User, activeTenantId?: string) {
      await this.session.regenerate()
      this.session.userId = user.id
      this.session.activeTenantId = activeTenantId
      this.session.createdAt = Date.now()
      this.user = user
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
      const user = await users.findById(userId)
      if (!user) {
        await req.session.destroy()
        throw unauthorized()
      }
      req.user = user
    })
  },
  { name: 'auth', dependencies: ['host-db', 'session'] },
)
